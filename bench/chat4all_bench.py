"""chat4all send throughput and accept latency over REST and gRPC, against two ceilings.

Each server runs in its own process (`chat4all serve` on a fresh SQLite database, its dispatcher
delivering meanwhile to the Bot API simulator in a third process, as a provider is another
machine; the ceilings from ``bench.ceiling``: the same framework on the same single uvicorn
process, once doing one SQLite insert per request, once answering 202 with no storage at all);
the load comes from this process, over REST (ours and the ceilings' alike) with the lean
keep-alive HTTP/1.1 client of ``bench.http_load`` (httpx cost more CPU per request than the
servers, on the same cores), over gRPC with grpc.aio:

- **throughput**: 32 concurrent senders, closed loop (send, await, send), in windows of
  ``WINDOW`` s taken by every side in turns (REST, gRPC, the two ceilings, then backward, twice),
  all four servers up at once: a change of the shared machine's load over the run hits every
  side alike, so the shares of the ceilings hold; a side's figure is its windows' median. A
  hub's window starts once its dispatcher has delivered what came before, and its CPU per
  message (the server process's, from /proc) counts until it has delivered that window's too;
- **latency at fixed rates**: an open loop at each of ``RATES`` msg/s for ``SECONDS`` s, each
  request timed from its scheduled start, so a slow server shows as latency, not as a lower
  rate. Each starts once the hub's dispatcher has delivered what came before (the closed loop's
  backlog, the previous rate's, and for gRPC REST's), so it measures the hub at that rate,
  delivering as it accepts.

Compare ratios from one run, not absolute figures. With
``CHAT4ALL_BENCH_BEFORE`` (``make bench-chat4all BEFORE=<revision>``), that release's hub and
this one serve at once and take closed-loop windows in turns (before, now, now, before, before,
now), each window's msg/s and the server's CPU per message recorded: the medians' ratio is what
this code keeps of the release's rate, hence of its share of the no-op ceiling. The no-op
ceiling is the framework's and the load client's bare rate on this machine at this moment: a
side's share of it tells how much our own code keeps of that rate, and is the figure to compare
between two versions of the hub.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from tests.tgstream.harness import free_port

from bench.common import provenance
from bench.http_load import Pool, post_head
from chat4all.adapters.channels.telegram import SIMULATOR_TOKEN
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc

SECONDS = 10.0
"""Seconds of each open loop."""
WINDOW = 5.0
"""Seconds of each closed-loop window (of the sides in turns, and of the side-by-side
comparison with the release before)."""
ROUNDS = 2
"""Closed-loop windows of each side: twice ``ROUNDS`` (the sides in turns forward, then
backward); its throughput is their median."""
RATES = (500, 1000)
"""The open loops' rates (msg/s); the last one is the target's (p99 ≤ 50 ms)."""
RATE = RATES[-1]
CONCURRENCY = 32


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Served:
    """A server process; ``ready``: a pattern its stderr shows once it serves (None: the caller
    waits for it some other way, as ``_listening`` does)."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: str | None) -> None:
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = ""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        for line in self.proc.stderr if ready is not None else ():
            self.log += line
            if re.search(ready, self.log):
                break
            assert time.monotonic() < deadline, self.log
        # keep draining, or a full pipe would stall the server
        import threading

        threading.Thread(target=lambda: [None for _ in self.proc.stderr or ()], daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


async def _closed_loop(
    send: Callable[[int], Awaitable[None]], seconds: float = SECONDS
) -> tuple[int, list[float]]:
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await send(w * 1_000_000 + n)
            latencies.append(time.perf_counter() - began)
            done += 1
            n += 1

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return done, latencies


async def _open_loop(send: Callable[[int], Awaitable[None]], rate: int) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter()
    tasks = []

    async def one(n: int, due: float) -> None:
        await send(n)
        latencies.append(time.perf_counter() - due)

    for n in range(int(rate * SECONDS)):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    return latencies


def _body(n: int) -> dict[str, Any]:
    return {
        "channel": "telegram",
        "account": "sim-bot",
        "recipient": str(n % 200),
        "content": {"text": f"m{n}"},
    }


def _json(n: int) -> bytes:
    """``_body(n)`` as JSON bytes, without paying json.dumps in the load generator."""
    return (
        b'{"channel":"telegram","account":"sim-bot","recipient":"%d","content":{"text":"m%d"}}'
        % (n % 200, n)
    )


def _hub(before: str | None = None) -> tuple[Served, Served, str, str]:
    """A hub and its provider, each a process; ``before``: the ``src/`` of another release to
    run instead of this one (a release from before the channel packages serves its Bot API
    simulator at the root, ours under /telegram)."""
    data = tempfile.mkdtemp(prefix="chat4all-bench-")
    port, grpc_port, sim_port = free_port(), free_port(), free_port()
    release = {"PYTHONPATH": before} if before else {}
    # The provider is another machine in production: here, another process.
    provider = Served(
        [sys.executable, "-m", "chat4all", "simulator", "--port", str(sim_port)],
        release,
        r"simulator on",
    )
    packaged = before is None or (Path(before) / "chat4all/adapters/channels/telegram").is_dir()
    root = "/telegram" if packaged else ""
    served = Served(
        [sys.executable, "-m", "chat4all", "serve"],
        {
            **release,
            "CHAT4ALL_DATA_DIR": data,
            "CHAT4ALL_PORT": str(port),
            "CHAT4ALL_GRPC_PORT": str(grpc_port),
            "CHAT4ALL_TELEGRAM_BOTS": json.dumps({"sim-bot": SIMULATOR_TOKEN}),
            "CHAT4ALL_TELEGRAM_API_URL": f"http://127.0.0.1:{sim_port}{root}",
            "CHAT4ALL_RATE_PER_KEY": "0",
            "CHAT4ALL_LOG_LEVEL": "WARNING",
        },
        r"c4a_[A-Za-z0-9_-]+",
    )
    key = re.search(r"(c4a_[A-Za-z0-9_-]+)", served.log).group(1)  # type: ignore[union-attr]
    return provider, served, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}|{key}"


async def _drained(url: str) -> None:
    """Until the hub's outbox is empty (its dispatcher caught up with what was accepted)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(1200):
            scrape = (await client.get("/metrics")).text
            if "\nchat4all_outbox_depth 0.0\n" in scrape:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the hub's outbox did not drain in 120 s")


Send = Callable[[int], Awaitable[None]]


def _rest_sender(url: str, path: str, headers: dict[str, str]) -> tuple[Send, Pool]:
    """REST load with the lean client of :mod:`bench.http_load` (httpx spent more CPU per
    request than the servers, on the same 2 cores)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    pool = Pool(host, int(port), CONCURRENCY * 4)
    head = post_head(f"{host}:{port}", path, headers)

    async def send(n: int) -> None:
        status, answer = await pool.post(head, _json(n))
        assert status == 202, answer

    return send, pool


def _grpc_sender(channel: grpc.aio.Channel, key: str) -> Send:
    stub = pb_grpc.Chat4AllServiceStub(channel)
    metadata = (("authorization", f"Bearer {key}"),)

    async def send(n: int) -> None:
        b = _body(n)
        await stub.SendMessage(
            pb.SendMessageRequest(
                channel="telegram",
                account=b["account"],
                recipient=b["recipient"],
                content=pb.Content(text=b["content"]["text"]),
            ),
            metadata=metadata,
        )

    return send


@dataclass
class _Side:
    """One side of the run: how to send to it, which process serves it (for its CPU), and
    what to wait for before a window (the hub's dispatcher delivering what came before)."""

    send: Send
    served: Served
    settle: Callable[[], Awaitable[None]] | None = None
    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


async def _sides(sides: dict[str, _Side]) -> dict[str, dict[str, Any]]:
    """Closed-loop windows of every side in turns (forward, then backward, ``ROUNDS`` times:
    a drift of the machine's load hits every side alike), then each side's open loops."""
    for side in sides.values():  # warm-up
        await asyncio.gather(*(side.send(-n - 1) for n in range(50)))
    names = list(sides)
    for _ in range(ROUNDS):
        for name in names + names[::-1]:
            side = sides[name]
            if side.settle is not None:
                await side.settle()
            cpu = _server_cpu(side.served)
            count, _ = await _closed_loop(side.send, WINDOW)
            if side.settle is not None:  # the hub's CPU counts until it has delivered them too
                await side.settle()
            side.rates.append(count / WINDOW)
            side.cpu.append((_server_cpu(side.served) - cpu) / count * 1e6)
    results = {}
    for name, side in sides.items():
        measured: dict[str, Any] = {
            "throughput": statistics.median(side.rates),
            "cpu_us": statistics.median(side.cpu),
        }
        for rate in RATES:
            if side.settle is not None:  # an open loop measures its rate, not what came before
                await side.settle()
            fixed = await _open_loop(side.send, rate)
            measured[f"p50_ms@{rate}"] = statistics.median(fixed) * 1000
            measured[f"p99_ms@{rate}"] = _percentile(fixed, 0.99) * 1000
        measured["windows"] = side.rates
        results[name] = measured
    return results


INSERT = "ceiling (one SQLite insert)"
NOOP = "ceiling (no-op, 202 with no storage)"


def _listening(served: Served, port: int) -> None:
    """Until the server accepts connections on ``port`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert served.proc.poll() is None, f"the ceiling exited: {served.log}"
        assert time.monotonic() < deadline, "the ceiling did not listen within 30 s"
        time.sleep(0.05)


def _ceiling(*args: str) -> tuple[Served, str]:
    """A ceiling's server (``bench.ceiling``), listening; its URL."""
    port = free_port()
    served = Served([sys.executable, "-m", "bench.ceiling", str(port), *args], {}, None)
    _listening(served, port)
    return served, f"http://127.0.0.1:{port}"


def _server_cpu(served: Served) -> float:
    """CPU seconds the server process has used (all its threads), from /proc."""
    with open(f"/proc/{served.proc.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _window(
    served: Served, url: str, key: str, seconds: float = WINDOW
) -> tuple[float, float]:
    """One closed-loop window of ``seconds`` on a hub: (msg/s accepted, server CPU µs per
    message, counted until its dispatcher has delivered them too)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    pool = Pool(host, int(port), CONCURRENCY * 4)
    head = post_head(f"{host}:{port}", "/v1/messages", {"Authorization": f"Bearer {key}"})

    async def send(n: int) -> None:
        status, answer = await pool.post(head, _json(n))
        assert status == 202, answer

    try:
        await _drained(url)
        cpu = _server_cpu(served)
        count, _ = await _closed_loop(send, seconds)
        await _drained(url)
        return count / seconds, (_server_cpu(served) - cpu) / count * 1e6
    finally:
        pool.close()


def _side_by_side(before: str) -> list[tuple[str, float, float]]:
    """The release before and this one, both serving at once, loaded in turns (before, now,
    now, before, before, now: a drift of the machine's speed over the run hits both alike)."""
    hubs = {"before": _hub(before), "now": _hub()}
    try:
        for _, served, url, target_key in hubs.values():  # warm-up
            asyncio.run(_window(served, url, target_key.split("|")[1], 1.0))
        windows = []
        for side in ("before", "now", "now", "before", "before", "now"):
            _, served, url, target_key = hubs[side]
            rate, cpu = asyncio.run(_window(served, url, target_key.split("|")[1]))
            windows.append((side, rate, cpu))
        return windows
    finally:
        for provider, served, _, _ in hubs.values():
            served.stop()
            provider.stop()


def _comparison(windows: list[tuple[str, float, float]], revision: str) -> list[str]:
    """The side-by-side windows as a table, and what this code keeps of the release's rate."""
    if not windows:
        return []
    lines = [
        "",
        f"This code against {revision}, both serving at once and loaded in turns ({WINDOW:.0f} s "
        f"closed-loop windows, {CONCURRENCY} senders; CPU: the server process's, until it has "
        "delivered what it accepted):",
        "",
        "| side | msg/s, each window in order | median msg/s | server CPU per message, median (µs) |",
        "|---|---|---|---|",
    ]
    medians = {}
    for side in ("before", "now"):
        rates = [rate for s, rate, _ in windows if s == side]
        cpus = [cpu for s, _, cpu in windows if s == side]
        medians[side] = (statistics.median(rates), statistics.median(cpus))
        name = revision if side == "before" else "this code"
        lines.append(
            f"| {name} | {', '.join(f'{r:.0f}' for r in rates)} | {medians[side][0]:.0f} "
            f"| {medians[side][1]:.0f} |"
        )
    kept = medians["now"][0] / medians["before"][0]
    cpu = medians["now"][1] / medians["before"][1]
    lines += [
        "",
        f"Both share one no-op ceiling, so this code keeps {kept:.0%} of the release's share of it "
        f"(target ≥ 90%: {'met' if kept >= 0.9 else '**missed**'}), spending {cpu:.0%} of its "
        "CPU per message.",
    ]
    return lines


def run(machine: str) -> str:
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    before = os.environ.get("CHAT4ALL_BENCH_BEFORE")
    windows = _side_by_side(before) if before else []
    provider, served, url, target_key = _hub()
    target, key = target_key.split("|")
    ceilings = [_ceiling("/insert", str(Path(tempfile.mkdtemp()) / "c.db")), _ceiling()]
    try:

        async def sides() -> dict[str, dict[str, Any]]:
            rest, rest_pool = _rest_sender(url, "/v1/messages", {"Authorization": f"Bearer {key}"})
            insert, insert_pool = _rest_sender(ceilings[0][1], "/insert", {})
            noop, noop_pool = _rest_sender(ceilings[1][1], "/noop", {})
            settle = functools.partial(_drained, url)
            try:
                async with grpc.aio.insecure_channel(target) as channel:
                    return await _sides(
                        {
                            "REST": _Side(rest, served, settle),
                            "gRPC": _Side(_grpc_sender(channel, key), served, settle),
                            INSERT: _Side(insert, ceilings[0][0]),
                            NOOP: _Side(noop, ceilings[1][0]),
                        }
                    )
            finally:
                for pool in (rest_pool, insert_pool, noop_pool):
                    pool.close()

        results = asyncio.run(sides())
    finally:
        for server, _ in ceilings:
            server.stop()
        served.stop()
        provider.stop()
    load += " (start); " + ", ".join(f"{n:.2f}" for n in os.getloadavg()) + " (end)"
    top = results[INSERT]["throughput"]
    noop = results[NOOP]["throughput"]
    revision = os.environ.get("CHAT4ALL_BENCH_BEFORE_REV")
    compared = f" BEFORE={revision}" if before and revision else ""
    latency = " | ".join(f"p50 / p99 at {rate} msg/s (ms)" for rate in RATES)
    lines = [
        provenance(f"`make bench-chat4all{compared}` (`python -m bench chat4all`)", machine),
        f"Load average (1, 5, 15 min): {load}.",
        "",
        f"| side | throughput, {CONCURRENCY} senders: median (each window), msg/s | share of the no-op ceiling | share of the one-insert ceiling | server CPU per message (µs) | {latency} |",
        "|---|---|---|---|---|" + "---|" * len(RATES),
    ]
    for name, r in results.items():
        points = " | ".join(
            f"{r[f'p50_ms@{rate}']:.1f} / {r[f'p99_ms@{rate}']:.1f}" for rate in RATES
        )
        each = ", ".join(f"{w:.0f}" for w in r["windows"])
        lines.append(
            f"| {name} | {r['throughput']:.0f} ({each}) | {r['throughput'] / noop:.1%} "
            f"| {r['throughput'] / top:.0%} | {r['cpu_us']:.0f} | {points} |"
        )
    rest = results["REST"]
    saturated = {rate: [n for n, r in results.items() if r["throughput"] < rate] for rate in RATES}
    for rate, over in saturated.items():
        if over:
            lines += [
                "",
                f"Saturated at {rate} msg/s (closed-loop throughput below it): "
                f"{', '.join(over)}. An open loop above a side's capacity queues without "
                "bound, so those latencies grow with the run's length: read them as 'over "
                "capacity', not as a per-request cost.",
            ]
    share = rest["throughput"] / noop
    lines += [
        "",
        "Targets: "
        + "; ".join(
            f"p99 accept latency ≤ 50 ms at {RATE} msg/s over {side}: "
            f"{'met' if results[side][f'p99_ms@{RATE}'] <= 50 else '**missed**'} "
            f"({results[side][f'p99_ms@{RATE}']:.1f} ms)"
            for side in ("REST", "gRPC")
        )
        + f"; REST send ≥ 20% of the no-op ceiling: {'met' if share >= 0.2 else '**missed**'} "
        f"({share:.1%}; stretch 30%: {'met' if share >= 0.3 else 'not met'}); gRPC send "
        f"{results['gRPC']['throughput'] / noop:.1%} of it; ≥ 50% of the one-insert ceiling: "
        f"{'met' if rest['throughput'] >= 0.5 * top else '**missed**'} "
        f"({rest['throughput'] / top:.0%}).",
        *_comparison(windows, revision or "the release before"),
        "",
        __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
    ]
    print(json.dumps(results, indent=1), file=sys.stderr)
    return "\n".join(lines)
