"""Acceptance: a 2 GB file, generated on the fly and never held in memory, uploaded in chunks to
a ``chat4all serve`` process, interrupted mid-chunk at 50% and resumed from the offset HEAD
gives, arrives with the right sha256. The hub's peak RSS (VmHWM) over its idle RSS is measured
and printed; the target is under 100 MB."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MIB = 1024 * 1024
SIZE = 2 * 1024 * MIB
PATCH = 128 * MIB
"""Bytes per PATCH request: a disconnect loses at most the one in flight."""


def block(i: int) -> bytes:
    """The i-th MiB of the file: cheap to make again, different from every other."""
    return i.to_bytes(8, "big") * (MIB // 8)


async def blocks(first: int, last: int, stop_at: int | None = None) -> AsyncIterator[bytes]:
    for i in range(first, last):
        if stop_at is not None and i == stop_at:
            raise ConnectionAbortedError("the test pulls the cable")
        yield block(i)


def kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found.group(1))


def start_hub(data: Path) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "CHAT4ALL_DATA_DIR": str(data),
        "CHAT4ALL_PORT": str(port),
        "CHAT4ALL_GRPC_PORT": str(free_port()),
        "CHAT4ALL_SIMULATOR_PORT": str(free_port()),
        "CHAT4ALL_RATE_PER_KEY": "0",
        "CHAT4ALL_MEDIA_MAX_BYTES": str(SIZE),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chat4all", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    key: list[str] = []
    ready = threading.Event()
    log: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                log.append(line)
                if found := re.search(r"(c4a_[A-Za-z0-9_-]+)", line):
                    key.append(found.group(1))
                if key and "chat4all API on" in "".join(log):
                    ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(60):
        proc.kill()
        proc.wait(10)
        pytest.fail("the hub did not start:\n" + "".join(log))
    return proc, f"http://127.0.0.1:{port}", key[0]


async def test_a_2_gb_upload_interrupted_at_half_resumes_with_flat_memory(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    expected = hashlib.sha256()
    for i in range(SIZE // MIB):
        expected.update(block(i))
    whole = expected.hexdigest()
    proc, url, key = start_hub(tmp_path / "hub")
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            await client.get("/health")
            idle = kib(proc.pid, "VmRSS")
            created = await client.post(
                "/v1/uploads", json={"size": SIZE, "filename": "big.bin", "sha256": whole}
            )
            assert created.status_code == 201, created.text
            path = f"/v1/uploads/{created.json()['id']}"
            half = SIZE // MIB // 2
            per = PATCH // MIB
            offset = 0
            interrupted = False
            patience = 0.0
            while offset < SIZE:
                first = offset // MIB
                last = min(first + per, SIZE // MIB)
                crosses = not interrupted and first < half + per // 2 <= last
                try:
                    answer = await client.patch(
                        path,
                        content=blocks(first, last, stop_at=half + per // 2 if crosses else None),
                        headers={"Upload-Offset": str(offset)},
                    )
                    if answer.status_code == 409 and interrupted and time.monotonic() < patience:
                        # the hub has not yet seen the cut connection end: as a tus client,
                        # ask again shortly
                        await asyncio.sleep(0.05)
                        continue
                    assert answer.status_code == 204, answer.text
                except ConnectionAbortedError:
                    interrupted = True
                    patience = time.monotonic() + 30
                    stands = await client.head(path)
                    offset = int(stands.headers["upload-offset"])
                    assert offset == first * MIB, "the cut chunk is not kept"
                    continue
                offset = int(answer.headers["upload-offset"])
            assert interrupted
            done = await client.post(f"{path}/complete")
            assert done.status_code == 201, done.text
            assert done.json()["sha256"] == whole and done.json()["size"] == SIZE
        peak = kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    above = (peak - idle) / 1024
    print(
        f"\n2 GB resumable upload: {time.monotonic() - began:.1f} s; hub idle RSS "
        f"{idle / 1024:.0f} MB, peak {peak / 1024:.0f} MB ({above:.0f} MB above idle)"
    )
    assert above < 100
