"""A worker that dies is never silent: its traceback is logged at once, ``/ready`` says which
worker is down and since when, gRPC health turns NOT_SERVING, and ``chat4all serve`` exits
non-zero so that its service manager starts it again. The failing worker is injected through
``build_hub``'s overrides."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chat4all.cli import GC_THRESHOLDS, WORKER_DIED
from chat4all.entrypoints.grpc_server import SERVICE_NAME
from tests.chat4all.conftest import hub_running


class Doomed(RuntimeError):
    pass


async def doomed(stop: asyncio.Event, after: asyncio.Event) -> None:
    await after.wait()
    raise Doomed("the doomed worker's end")


async def _grpc_health(target: str) -> dict[str, int]:
    """The gRPC health status of the server and of the API service."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {
            service: (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status
            for service in ("", SERVICE_NAME)
        }


async def test_a_dead_worker_is_logged_and_ready_says_which_and_since_when(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    go = asyncio.Event()
    overrides = {"workers": {"doomed": lambda stop: doomed(stop, go)}}
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    async with hub_running(tmp_path, overrides=overrides) as hub:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=hub.url) as client:
            assert (await client.get("/ready")).json()["ready"] is True
            assert await _grpc_health(hub.grpc_target) == {"": serving, SERVICE_NAME: serving}
            before = time.time()
            go.set()
            assert await asyncio.wait_for(hub.supervisor.wait(), 10) is not None
            answer = await client.get("/ready")
            health = await _grpc_health(hub.grpc_target)
        assert health == {"": not_serving, SERVICE_NAME: not_serving}
        assert answer.status_code == 503
        reason = answer.json()["reason"]
        assert answer.json()["ready"] is False
        match = re.fullmatch(
            r"tasks: worker doomed stopped at (\S+Z): Doomed: the doomed worker's end", reason
        )
        assert match is not None, reason
        stamp = time.mktime(time.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert before - 1 <= stamp <= time.time() + 1
        states = {s.name: s for s in hub.supervisor.states()}
        assert states["doomed"].running is False
        assert states["dispatcher"].running and states["webhooks"].running  # the others run on
        assert states["rest"].running and states["housekeeping"].running
    [record] = [r for r in caplog.records if "doomed died" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is Doomed  # with its traceback


SCRIPT = """
import asyncio, sys
from chat4all.cli import serve_hub
from chat4all.config import load_settings
from opskit.lifecycle import run_until_stopped
from opskit.logs import setup_logging

async def doomed(stop: asyncio.Event) -> None:
    await asyncio.sleep(0.5)
    raise RuntimeError("lost its footing")

setup_logging("INFO")
settings = load_settings(None, PORT=0, GRPC_PORT=0, SIMULATOR_PORT=0)
sys.exit(run_until_stopped(lambda stop: serve_hub(settings, stop, workers={"doomed": doomed})))
"""


def test_serve_exits_non_zero_promptly_when_a_worker_dies(tmp_path: Path) -> None:
    script = tmp_path / "serve_with_a_doomed_worker.py"
    script.write_text(textwrap.dedent(SCRIPT))
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(sys.path),
            "CHAT4ALL_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode == WORKER_DIED == 4, done.stderr
    assert "worker doomed died: RuntimeError: lost its footing" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert 'raise RuntimeError("lost its footing")' in done.stderr
    assert "worker doomed stopped at" in done.stderr  # the operator's one-line reason
    assert took < 30, f"took {took:.1f}s to exit"


@pytest.mark.parametrize("command", [[], ["serve"], ["api"], ["worker"]])
def test_the_exit_code_is_documented(command: list[str]) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "chat4all", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},  # the epilog on one line
    ).stdout
    assert "4 a task died" in shown


GC_SCRIPT = """
import asyncio, gc, sys
from chat4all.cli import serve_hub
from chat4all.config import load_settings
from opskit.lifecycle import run_until_stopped

async def report(stop: asyncio.Event) -> None:
    while gc.get_freeze_count() == 0:  # until serve has frozen what startup built
        await asyncio.sleep(0.01)
    print("thresholds", *gc.get_threshold(), flush=True)
    stop.set()

settings = load_settings(None, PORT=0, GRPC_PORT=0, SIMULATOR_PORT=0)
sys.exit(run_until_stopped(lambda stop: serve_hub(settings, stop, workers={"report": report})))
"""


def test_serve_keeps_fan_out_wake_ups_out_of_full_collections(tmp_path: Path) -> None:
    script = tmp_path / "serve_and_report_the_collector.py"
    script.write_text(textwrap.dedent(GC_SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(sys.path),
            "CHAT4ALL_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"thresholds {' '.join(map(str, GC_THRESHOLDS))}" in done.stdout, done.stdout
    assert GC_THRESHOLDS[0] > 700  # CPython's default young generation, which the streams outgrew
