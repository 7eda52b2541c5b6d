"""chat4all's scale-out deployment against the embedded hub, in one run: throughput, accept
latency, and what each process type and each engine spends in CPU per 1,000 messages.

Three sides, one after the other, each delivering to the Bot API simulator in its own process
(a provider is another machine):

- **embedded**: ``chat4all serve`` on SQLite (its store inside the process);
- **scale-out, 1 API**: ``chat4all api``, ``worker`` and ``relay`` on private PostgreSQL, NATS
  JetStream and Redis servers (tests/services.py), the load on the one API process;
- **scale-out, 2 APIs**: two of each but one relay, the load spread over both API processes.

Each side: a closed loop of ``CONCURRENCY`` senders for ``SECONDS`` s (its rate), its CPU counted
from the loop's start until the workers delivered all of it (the processes' and the engines' own
accounting, /proc: a PostgreSQL server's backends included, live or reaped), then open loops at
each of ``RATES`` msg/s (each request timed from its scheduled start). On 2 cores more processes
cannot add throughput; what this tells is the cost of the deployment, per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.chat4all.cluster import Proc, cli, first_key
from tests.postgres import server_url
from tests.services import Nats, PostgreSQL, PrivateServer, Redis, free_port

from bench.chat4all_bench import CONCURRENCY, RATES, Served, _closed_loop, _json, _open_loop
from bench.chat4all_bench import _percentile as percentile
from bench.common import proc_cpu, provenance, tree_cpu
from bench.http_load import Pool, post_head
from chat4all.adapters.channels.telegram import SIMULATOR_TOKEN

SECONDS = 10.0
DRAINED_WITHIN = 180.0


@dataclass
class Side:
    name: str
    apis: list[Proc]
    drains: Proc
    """The process whose /metrics has the outbox depth (the worker, or ``serve``)."""
    procs: list[Proc]
    engines: dict[str, PrivateServer] = field(default_factory=dict)
    key: str = ""

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by process type and by engine."""
        spent: dict[str, float] = {}
        for proc in self.procs:
            assert proc.proc is not None
            spent[proc.command] = spent.get(proc.command, 0.0) + proc_cpu(proc.proc.pid)
        for name, server in self.engines.items():
            spent[name] = tree_cpu(server.pid)
        return spent

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


async def drained(side: Side) -> None:
    """Until the outbox is empty: everything accepted was delivered."""
    deadline = time.monotonic() + DRAINED_WITHIN
    async with httpx.AsyncClient(base_url=side.drains.url, timeout=10) as client:
        while "\nchat4all_outbox_depth 0.0\n" not in (await client.get("/metrics")).text:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side.name}: the outbox did not drain in {DRAINED_WITHIN} s")
            await asyncio.sleep(0.1)


async def measure(side: Side) -> dict[str, Any]:
    pools = []
    for api in side.apis:
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        headers = {"Authorization": f"Bearer {side.key}"}
        pools.append(
            (
                Pool(host, int(port), CONCURRENCY * 4),
                post_head(api.url[7:], "/v1/messages", headers),
            )
        )

    async def send(n: int) -> None:
        pool, head = pools[n % len(pools)]
        status, answer = await pool.post(head, _json(n))
        assert status == 202, answer

    try:
        await asyncio.gather(*(send(-n - 1) for n in range(50)))  # warm-up
        await drained(side)
        before, began = side.cpu(), time.monotonic()
        count, _ = await _closed_loop(send, SECONDS)
        await drained(side)
        spent = {k: v - before.get(k, 0.0) for k, v in side.cpu().items()}
        result: dict[str, Any] = {
            "throughput": count / SECONDS,
            "delivered": count / (time.monotonic() - began),
            "cpu_per_1000": {k: v / count * 1000 for k, v in spent.items()},
        }
        for rate in RATES:
            await drained(side)
            fixed = await _open_loop(send, rate)
            result[f"p50_ms@{rate}"] = statistics.median(fixed) * 1000
            result[f"p99_ms@{rate}"] = percentile(fixed, 0.99) * 1000
        return result
    finally:
        for pool, _ in pools:
            pool.close()


def base_env(simulator_port: int, data: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "CHAT4ALL_DATA_DIR": str(data),
        "CHAT4ALL_MEDIA_DIR": str(data / "media"),
        "CHAT4ALL_TELEGRAM_BOTS": json.dumps({"sim-bot": SIMULATOR_TOKEN}),
        "CHAT4ALL_TELEGRAM_API_URL": f"http://127.0.0.1:{simulator_port}/telegram",
        "CHAT4ALL_RATE_PER_KEY": "0",
        "CHAT4ALL_SHED_OUTBOX_AGE": "0",  # a benchmark's backlog is on purpose
    }


@contextlib.contextmanager
def embedded(simulator_port: int, root: Path) -> Iterator[Side]:
    serve = Proc("serve", "serve", base_env(simulator_port, root / "embedded"), ready="c4a_")
    serve.start()
    side = Side("embedded (SQLite, one process)", [serve], serve, [serve])
    side.key = first_key(serve.log) or ""
    assert side.key, serve.tail()
    try:
        yield side
    finally:
        side.stop()


@contextlib.contextmanager
def scaled_out(
    name: str, simulator_port: int, root: Path, apis: int, workers: int
) -> Iterator[Side]:
    with (
        PostgreSQL(server_url()).server() as postgres,
        Nats.from_environment().server() as nats,
        Redis.from_environment().server() as redis,
    ):
        env = {
            **base_env(simulator_port, root / name.split(maxsplit=1)[0]),
            "CHAT4ALL_DATABASE_URL": f"{postgres.url}/postgres",
            "CHAT4ALL_NATS_URL": nats.url,
            "CHAT4ALL_REDIS_URL": redis.url,
            "CHAT4ALL_PARTITIONS": "8",
        }
        cli(env, "migrate")
        key = cli(env, "keys", "create", "--tenant", "default", "--role", "admin").strip()
        procs = [
            *(Proc(f"api-{n}", "api", env) for n in range(apis)),
            *(Proc(f"worker-{n}", "worker", env) for n in range(workers)),
            Proc("relay", "relay", env),
        ]
        side = Side(
            name,
            procs[:apis],
            procs[apis],
            procs,
            {"PostgreSQL": postgres, "NATS": nats, "Redis": redis},
            key,
        )
        try:
            for proc in procs:
                proc.start()
            yield side
        finally:
            side.stop()


def _table(results: dict[str, dict[str, Any]]) -> list[str]:
    kinds = ["serve", "api", "worker", "relay", "PostgreSQL", "NATS", "Redis"]
    lines = [
        "| side | msg/s accepted (32 senders) | msg/s delivered | "
        + " | ".join(f"p50 / p99 at {r} msg/s (ms)" for r in RATES)
        + " | CPU-s per 1,000 messages: "
        + ", ".join(kinds)
        + " | total | x embedded |",
        "|---" * (6 + len(RATES)) + "|",
    ]
    embedded_total = sum(next(iter(results.values()))["cpu_per_1000"].values())
    for name, r in results.items():
        cpu = r["cpu_per_1000"]
        total = sum(cpu.values())
        split = " / ".join(f"{cpu[k]:.2f}" if k in cpu else "-" for k in kinds)
        latency = " | ".join(
            f"{r[f'p50_ms@{rate}']:.1f} / {r[f'p99_ms@{rate}']:.1f}" for rate in RATES
        )
        lines.append(
            f"| {name} | {r['throughput']:.0f} | {r['delivered']:.0f} | {latency} | {split} | "
            f"{total:.2f} | "
            f"{total / embedded_total:.2f} |"
        )
    return lines


def run(machine: str) -> str:
    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="chat4all-bench-scale-"))
    simulator_port = free_port()
    provider = Served(
        [sys.executable, "-m", "chat4all", "simulator", "--port", str(simulator_port)],
        {},
        r"simulator on",
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        with embedded(simulator_port, root) as side:
            results[side.name] = asyncio.run(measure(side))
        for name, apis, workers in (
            ("scale-out, 1 API process (1 worker, 1 relay)", 1, 1),
            ("scale-out, 2 API processes (2 workers, 1 relay)", 2, 2),
        ):
            with scaled_out(name, simulator_port, root, apis, workers) as side:
                results[side.name] = asyncio.run(measure(side))
    finally:
        provider.stop()
    end_load = os.getloadavg()[0]
    lines = [
        provenance("`make bench-scale-out` (`python -m bench scale-out`)", machine),
        f"Load average {load:.2f} at the start, {end_load:.2f} at the end.",
        "",
        *_table(results),
        "",
        "CPU-seconds per 1,000 messages accepted and delivered (the sides' processes and engines "
        "from /proc, counted from the closed loop's start until the outbox was empty); the load "
        "client is this process and is not counted. The per-process-type split is where the CPU "
        "goes; the engines' columns are the private servers' (PostgreSQL with its backends).",
    ]
    for name, r in results.items():
        print(f"{name}: {json.dumps(r)}", file=sys.stderr)
    return "\n".join(lines)
