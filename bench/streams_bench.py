"""How many idle live-event streams (SSE and gRPC ``StreamEvents``) one API process holds within
1 GiB of RSS while an event still reaches every stream within 1 s; and the store's latency
under a steady send load, from the hub's own ``chat4all_store_seconds`` histogram.

The hub runs in its own process (``chat4all serve`` on a fresh SQLite database, delivering to
the Bot API simulator in another process, as in ``bench.chat4all_bench``); the streams and the
load come from this process:

- **SSE**: raw asyncio connections, one socket per stream (``GET /v1/events`` with a reader
  key): the response head, then only the ``message.status`` frames' message ids are parsed.
- **gRPC**: grpc.aio ``StreamEvents`` calls, ``STREAMS_PER_CHANNEL`` per channel (each channel
  its own TCP connection: a local subchannel pool), one task reading each call.

Streams open in steps (``STEPS``); at each step, once every stream has received a warm-up
event, the hub's RSS (``VmRSS``) is read, then ``ROUNDS`` messages are sent one after the other
(``POST /v1/messages``, a sender key) and each stream's first ``message.status`` event of each
is timed from the send: p50 / p99 / max over streams and rounds. That time includes the
delivery to the simulator (the status event is the dispatcher's ``sent``) and this client's
own reading of every stream on the same 2 cores. The steps stop at the first of: RSS over
1 GiB, a stream refused or never subscribed, an event later than 1 s at some stream, or the
open-files limit (one file per SSE stream on both sides; ``RLIMIT_NOFILE``'s hard limit cannot
be raised in this container). SSE and gRPC each get a fresh hub.

Then, on a fresh hub without streams, an open loop sends each of ``LOAD_RATES`` msg/s for
``LOAD_SECONDS`` s (the issue's 1,000, and 500 as ``bench.chat4all_bench`` does: below the
hub's saturation on this machine) (the lean client of ``bench.http_load``), and the store latency's p95 per
operation comes from the difference of two scrapes of ``/metrics``, around the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc
import httpx
from tests.tgstream.harness import free_port

from bench.chat4all_bench import Served, _json, _percentile
from bench.common import provenance
from bench.http_load import Pool, post_head
from chat4all.adapters.channels.telegram import SIMULATOR_TOKEN
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc

STEPS: Final = (1000, 2500, 5000, 10_000, 20_000, 40_000, 80_000)
RSS_LIMIT: Final = 1 << 30
FANOUT_LIMIT: Final = 1.0
ROUNDS: Final = 3
STREAMS_PER_CHANNEL: Final = 250
OPENING: Final = 256
"""SSE connections being opened at once."""
LOST_SHARE: Final = 0.01
"""Streams that may end early (counted and shown, cause unknown) before a step counts as failed."""
SPARE_FILES: Final = 150
"""Open files the hub (and this client) need besides the SSE sockets."""
LOAD_RATES: Final = (500, 1000)
LOAD_SECONDS: Final = 10.0
_STATUS: Final = b'event: message.status\ndata: {"id":"'


NOTES: Final = """\
What limits the streams (found on 2026-12-01 with tracemalloc, py-spy and `gc.callbacks` on the
hub, each at 2,000 to 10,000 SSE streams):

- **Memory is not the limit.** ~40 KiB of RSS per idle SSE stream and ~29 KiB per gRPC stream,
  so 1 GiB holds ~22,000 SSE and ~30,000 gRPC streams; SSE stops first at the open-files limit
  (one socket per stream on each side). tracemalloc at 2,000 SSE streams: ~37 KiB of Python
  heap per stream in ~200 tracked objects, spread over every layer with no dominant one: the
  subscriber's `asyncio.Queue(1000)` ~3.3 KiB (four deques of 64 slots; the bound allocates
  nothing ahead), uvicorn's protocol and request cycle ~3-4 KiB, FastAPI's dependency solving
  and its `AsyncExitStack` ~3 KiB, the request's OpenTelemetry span (open for the stream's
  life) ~2 KiB, Starlette's `StreamingResponse` with an anyio task group of two tasks (uvicorn
  announces ASGI spec 2.3, so Starlette watches for the disconnect in a second task) ~3 KiB, the
  rest coroutine frames and tasks.
- **The garbage collector was the limit.** At 10,000 SSE streams (2 million tracked objects)
  each full collection stopped the event loop 1.5-2.2 s and freed nothing; with CPython's young
  generation of 700 objects, a fan-out (one wake-up per stream alive at once) promoted its
  short-lived objects to the oldest generation and caused one every few seconds, so an event
  landing in one reached its streams 2-3 s late (fan-out max 2.0-3.1 s at 10,000 in two runs).
  `chat4all serve` now sets the thresholds to 50,000 / 20 / 100 after its startup freeze
  (`chat4all.cli.GC_THRESHOLDS`): no full collection during 15 fan-outs at 10,000 streams.
- **Then the fan-out's CPU.** py-spy (`--gil`) at 10,000 SSE streams, with the change above:
  ~49% of the hub's GIL time in uvicorn's `transport.write` (one `send()` per stream and
  event, the floor of one socket per stream), ~11% in `EventBus.publish`'s synchronous loop of
  `put_nowait` (no stream is served before it ends), the rest each stream's wake-up through ~8
  frames of generators and ASGI send wrappers (Starlette's two, our `Observe`, anyio's task).
  Before it, the full collections showed as 60% of the GIL time inside that loop (the
  `set_result` allocations that triggered them). Each event's SSE frame and gRPC answer are
  now built once for all its streams (not once per stream), and the SSE stream no longer asks
  `request.is_disconnected()` per event (`StreamingResponse` watches for the disconnect
  itself): SSE fan-out at 5,000 streams went from p50 370 / max 1,306 ms to 232 / 536 ms in the
  same busy hour, before the GC change.
- **gRPC** costs more per event than SSE, and some of its streams end by themselves: with 1,000
  streams per HTTP/2 connection 0.2-1% of them ended with `CANCELLED` soon after they opened;
  with 250 per connection 0.1% at 10,000 and 1.75% at 20,000 before the resumable live events
  were merged, 0.8% at 5,000 and 3.2% by 20,000 after (the 20,000 step then stops on it). They
  never reached the hub's handler (its `chat4all_grpc_requests_total{method="StreamEvents"}` is
  the streams opened minus those), they are the ones opened while the first channels were still
  being set up, and raising grpc-core's limits on calls not yet taken by the server
  (`grpc.server_max_unrequested_time_in_server`, `grpc.server_max_pending_requests`) changed
  nothing; cause not found. Counted as "ended early", not in the fan-out figures.

Proposed, not done here (service_layer/events.py is being rewritten for the Redis fan-out):
`EventBus` subscribers as a deque and one waiter future instead of an `asyncio.Queue` (~3 KiB
and ~10 tracked objects less per stream), and `publish` handing a large tenant's fan-out to a
task that yields to the loop every few hundred streams; `/v1/events` as a plain ASGI route
below FastAPI's dependency machinery and the per-stream task group (fewer objects per stream,
less CPU per event). Past ~20,000 streams per process, more API processes behind the Redis
fan-out.
"""


@dataclass
class Board:
    """Which stream received which message's first ``message.status`` event, and when."""

    arrivals: dict[str, dict[int, float]] = field(default_factory=dict)
    wanted: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    lost: int = 0
    endings: dict[str, int] = field(default_factory=dict)
    """Why streams ended, and how many of each."""
    heads: int = 0
    refused: int = 0

    def arrived(self, message_id: str, stream: int) -> None:
        seen = self.arrivals.setdefault(message_id, {})
        if stream not in seen:
            seen[stream] = time.perf_counter()
            if len(seen) >= self.wanted:
                self.complete.set()


class SseStream(asyncio.Protocol):
    """One ``GET /v1/events``: the head's status, then the message ids of ``message.status``
    frames (a frame cut between two reads is kept from its start)."""

    __slots__ = ("board", "buffer", "head", "index")

    def __init__(self, board: Board, index: int) -> None:
        self.board, self.index = board, index
        self.head = False
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.head:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.head = True
            if buffer[9:12] == b"200":
                self.board.heads += 1
            else:
                self.board.refused += 1
            buffer = buffer[end + 4 :]
        while True:
            at = buffer.find(_STATUS)
            if at < 0:
                self.buffer = buffer[-len(_STATUS) :]
                return
            start = at + len(_STATUS)
            end = buffer.find(b'"', start)
            if end < 0:
                self.buffer = buffer[at:]
                return
            self.board.arrived(buffer[start:end].decode(), self.index)
            buffer = buffer[end:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.board.lost += 1


def _rss(pid: int) -> int:
    """The process's resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open-files limit for {pid}")


@dataclass
class Hub:
    provider: Served
    served: Served
    url: str
    grpc_target: str
    sender: str
    reader: str

    def stop(self) -> None:
        self.served.stop()
        self.provider.stop()


def _hub(serve: list[str] | None = None) -> Hub:
    """A hub and its provider, each a process, and a sender and a reader key of its tenant;
    ``serve``: the hub's command (``python -m chat4all serve`` by default)."""
    data = tempfile.mkdtemp(prefix="chat4all-streams-")
    port, grpc_port, sim_port = free_port(), free_port(), free_port()
    provider = Served(
        [sys.executable, "-m", "chat4all", "simulator", "--port", str(sim_port)],
        {},
        r"simulator on",
    )
    env = {
        "CHAT4ALL_DATA_DIR": data,
        "CHAT4ALL_PORT": str(port),
        "CHAT4ALL_GRPC_PORT": str(grpc_port),
        "CHAT4ALL_TELEGRAM_BOTS": json.dumps({"sim-bot": SIMULATOR_TOKEN}),
        "CHAT4ALL_TELEGRAM_API_URL": f"http://127.0.0.1:{sim_port}/telegram",
        "CHAT4ALL_RATE_PER_KEY": "0",
        "CHAT4ALL_LOG_LEVEL": "WARNING",
    }
    served = Served(
        serve or [sys.executable, "-m", "chat4all", "serve"], env, r"c4a_[A-Za-z0-9_-]+"
    )
    keys = {}
    for role in ("sender", "reader"):
        created = subprocess.run(
            [
                *(sys.executable, "-m", "chat4all", "keys", "create", "--tenant", "default"),
                *("--role", role, "--name", f"streams bench {role}"),
            ],
            env={**os.environ, **env},
            cwd=data,
            capture_output=True,
            text=True,
            check=True,
        )
        keys[role] = created.stdout.strip()
    return Hub(
        provider,
        served,
        f"http://127.0.0.1:{port}",
        f"127.0.0.1:{grpc_port}",
        keys["sender"],
        keys["reader"],
    )


async def _send(pool: Pool, head: bytes) -> tuple[str, float]:
    """One message sent: its id, and when the send began."""
    began = time.perf_counter()
    status, answer = await pool.post(head, _json(int(began * 1e6)))
    assert status == 202, answer
    return str(json.loads(answer)["id"]), began


async def _until_everyone(
    board: Board, pool: Pool, head: bytes, streams: int, tries: int = 5
) -> bool:
    """Warm-up messages until one reaches every one of ``streams`` still open (each subscribed)."""
    for _ in range(tries):
        board.wanted = streams - board.lost
        board.complete.clear()
        message_id, _ = await _send(pool, head)
        try:
            await asyncio.wait_for(board.complete.wait(), 20 + streams / 1000)
        except TimeoutError:
            got = len(board.arrivals.get(message_id, {}))
            print(f"  warm-up reached {got}/{streams} streams", file=sys.stderr)
        else:
            return True
    return False


async def _fan_out(board: Board, pool: Pool, head: bytes, streams: int) -> list[float]:
    """``ROUNDS`` messages, one after the other: each stream's delay for each (seconds)."""
    delays: list[float] = []
    for _ in range(ROUNDS):
        board.wanted = streams - board.lost
        board.complete.clear()
        message_id, began = await _send(pool, head)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(board.complete.wait(), 30 + streams / 500)
        seen = board.arrivals.get(message_id, {})
        delays += [at - began for at in seen.values()]
        delays += [math.inf] * (board.wanted - len(seen))  # never arrived
        await asyncio.sleep(0.2)  # the delivered receipts of this round pass first
    return delays


@dataclass
class Step:
    streams: int
    rss: int
    delays: list[float]
    lost: int
    """Streams that ended before or during the step (not in ``delays``)."""

    @property
    def worst(self) -> float:
        return max(self.delays)


Opener = Callable[[Board, int, int], Awaitable[None]]
"""Opens streams ``[have, want)`` on the board."""


async def _steps(hub: Hub, open_more: Opener, cap: int | None) -> tuple[list[Step], str]:
    """Open streams step by step; each step measured; why it stopped."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    pool = Pool(host, int(port), 4)
    head = post_head(f"{host}:{port}", "/v1/messages", {"Authorization": f"Bearer {hub.sender}"})
    board = Board()
    steps: list[Step] = []
    have = 0
    why = f"the last step ({STEPS[-1]:,} streams) passed"
    try:
        for step in STEPS:
            want = step if cap is None else min(step, cap)
            if want <= have:
                break
            began = time.perf_counter()
            await open_more(board, have, want)
            have = want
            if board.refused or board.lost > want * LOST_SHARE:
                why = f"{board.refused} refused, {board.lost} ended ({board.endings}) at {want:,}"
                break
            if not await _until_everyone(board, pool, head, want):
                why = f"not every one of {want:,} streams subscribed ({board.lost} ended: "
                why += f"{board.endings or 'no error seen'})"
                break
            rss = _rss(hub.served.proc.pid)
            delays = await _fan_out(board, pool, head, want)
            steps.append(Step(want, rss, delays, board.lost))
            print(
                f"  {want:,} streams open in {time.perf_counter() - began:.1f} s; RSS "
                f"{rss / 2**20:.0f} MiB; fan-out p50 {statistics.median(delays) * 1000:.0f} ms, "
                f"max {max(delays) * 1000:.0f} ms",
                file=sys.stderr,
            )
            if rss > RSS_LIMIT:
                why = f"RSS {rss / 2**20:.0f} MiB > 1 GiB at {want:,}"
                break
            if max(delays) > FANOUT_LIMIT:
                why = f"an event took {max(delays):.2f} s > 1 s at {want:,}"
                break
            if cap is not None and want == cap:
                why = (
                    f"the open-files limit ({cap + SPARE_FILES:,}, one file per SSE stream on "
                    "both sides) reached"
                )
                break
        if board.endings:
            why += f"; streams that ended early: {board.endings}"
        return steps, why
    finally:
        pool.close()


class SseStreams:
    """Opens SSE streams on a hub (an :data:`Opener`); :meth:`close` closes them all."""

    def __init__(self, hub: Hub) -> None:
        self.host, port = hub.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.request = (
            f"GET /v1/events HTTP/1.1\r\nHost: {self.host}:{port}\r\n"
            f"Authorization: Bearer {hub.reader}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.transports: list[asyncio.BaseTransport] = []
        self.gate = asyncio.Semaphore(OPENING)

    async def _one(self, board: Board, index: int) -> None:
        async with self.gate:
            try:
                transport, _ = await asyncio.get_running_loop().create_connection(
                    lambda: SseStream(board, index), self.host, self.port
                )
            except OSError as exc:
                print(f"  stream {index}: {exc!r}", file=sys.stderr)
                board.refused += 1
                return
            transport.write(self.request)
            self.transports.append(transport)

    async def __call__(self, board: Board, have: int, want: int) -> None:
        await asyncio.gather(*(self._one(board, i) for i in range(have, want)))
        deadline = time.monotonic() + 60 + want / 200
        while board.heads + board.refused + board.lost < want and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for transport in self.transports:
            transport.close()


class GrpcStreams:
    """Opens gRPC ``StreamEvents`` calls on a hub, ``STREAMS_PER_CHANNEL`` per channel (an
    :data:`Opener`); :meth:`close` ends them all."""

    def __init__(self, hub: Hub) -> None:
        self.target = hub.grpc_target
        self.metadata = (("authorization", f"Bearer {hub.reader}"),)
        self.channels: list[grpc.aio.Channel] = []
        self.readers: list[asyncio.Task[None]] = []

    async def _read(self, board: Board, stub: pb_grpc.Chat4AllServiceStub, index: int) -> None:
        try:
            async for answer in stub.StreamEvents(pb.StreamEventsRequest(), metadata=self.metadata):
                if answer.event.type == "message.status":
                    board.arrived(json.loads(answer.event.data_json)["id"], index)
        except grpc.aio.AioRpcError as exc:
            board.lost += 1
            why = f"{exc.code().name}: {exc.details()}"
            board.endings[why] = board.endings.get(why, 0) + 1

    async def __call__(self, board: Board, have: int, want: int) -> None:
        for index in range(have, want):
            if index % STREAMS_PER_CHANNEL == 0:
                # its own TCP connection (grpc shares one between equal channels otherwise)
                self.channels.append(
                    grpc.aio.insecure_channel(
                        self.target, options=[("grpc.use_local_subchannel_pool", 1)]
                    )
                )
            stub = pb_grpc.Chat4AllServiceStub(self.channels[-1])
            self.readers.append(asyncio.create_task(self._read(board, stub, index)))
            if index % 500 == 0:
                await asyncio.sleep(0)  # let the calls start

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def _measured(hub: Hub, kind: str, cap: int | None) -> tuple[list[Step], str]:
    streams = SseStreams(hub) if kind == "SSE" else GrpcStreams(hub)
    try:
        return await _steps(hub, streams, cap)
    finally:
        await streams.close()


def _histogram(scrape: str, name: str) -> dict[str, dict[float, float]]:
    """``{operation: {le: cumulative count}}`` of a histogram in a Prometheus text scrape."""
    found: dict[str, dict[float, float]] = {}
    pattern = re.compile(rf"^{name}_bucket\{{(.*)\}} (\S+)$", re.M)
    for labels, value in pattern.findall(scrape):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found.setdefault(pairs["operation"], {})[float(pairs["le"])] = float(value)
    return found


def _quantile(buckets: dict[float, float], q: float) -> tuple[float, int]:
    """The ``q`` quantile, interpolated within its bucket as Prometheus does, and the count."""
    bounds = sorted(buckets)
    total = buckets[math.inf]
    rank, below, lower = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == math.inf:
                return lower, int(total)
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1), int(total)
        below, lower = buckets[bound], bound
    return lower, int(total)


async def _store_latency(hub: Hub, rate: int) -> tuple[dict[str, tuple[float, int]], list[float]]:
    """p95 of ``chat4all_store_seconds`` per operation over an open loop at ``rate`` msg/s,
    and the accept latencies this client saw."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    pool = Pool(host, int(port), 128)
    head = post_head(f"{host}:{port}", "/v1/messages", {"Authorization": f"Bearer {hub.sender}"})
    latencies: list[float] = []

    async def one(n: int, due: float) -> None:
        status, answer = await pool.post(head, _json(n))
        assert status == 202, answer
        latencies.append(time.perf_counter() - due)

    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as client:
        await asyncio.gather(*(one(-n - 1, time.perf_counter()) for n in range(50)))  # warm-up
        latencies.clear()
        before = _histogram((await client.get("/metrics")).text, "chat4all_store_seconds")
        start = time.perf_counter()
        tasks = []
        for n in range(int(rate * LOAD_SECONDS)):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
        after = _histogram((await client.get("/metrics")).text, "chat4all_store_seconds")
    pool.close()
    result = {}
    for operation, buckets in after.items():
        was = before.get(operation, {})
        delta = {le: count - was.get(le, 0.0) for le, count in buckets.items()}
        if delta[math.inf] > 0:
            result[operation] = _quantile(delta, 0.95)
    return result, latencies


def _table(kind: str, steps: list[Step], why: str, idle: int) -> list[str]:
    lines = [
        f"| {kind} streams | hub RSS (MiB) | RSS per stream over the idle hub (KiB) "
        "| fan-out p50 / p99 / max (ms) | streams ended early |",
        "|---|---|---|---|---|",
    ]
    for step in steps:
        ms = [d * 1000 for d in step.delays]
        lines.append(
            f"| {step.streams:,} | {step.rss / 2**20:.0f} "
            f"| {(step.rss - idle) / step.streams / 1024:.1f} "
            f"| {statistics.median(ms):.0f} / {_percentile(ms, 0.99):.0f} / {max(ms):.0f} "
            f"| {step.lost} |"
        )
    lines += ["", f"{kind}: stopped because {why}."]
    return lines


def _store_line(rate: int, store: dict[str, tuple[float, int]], accepts: list[float]) -> str:
    worst = max((p95 for p95, _ in store.values()), default=math.inf)
    return (
        f"- Store latency under an open loop of {rate:,} msg/s for {LOAD_SECONDS:.0f} s "
        "(`chat4all_store_seconds`, the difference of two scrapes; p95 interpolated within its "
        "bucket): "
        + "; ".join(
            f"{op} p95 {p95 * 1000:.1f} ms ({count:,} calls)"
            for op, (p95, count) in sorted(store.items())
        )
        + f" (target p95 < 50 ms: {'met' if worst < 0.05 else '**missed**'}); accept latency "
        f"seen by the client p50 {statistics.median(accepts) * 1000:.1f} ms, p99 "
        f"{_percentile(accepts, 0.99) * 1000:.1f} ms."
    )


def run(machine: str) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the hub inherits it
    load = os.getloadavg()
    results: dict[str, tuple[list[Step], str, int, int]] = {}
    for kind in ("SSE", "gRPC"):
        hub = _hub()
        try:
            limit = _open_files_limit(hub.served.proc.pid)
            idle = _rss(hub.served.proc.pid)
            print(f"{kind}: hub pid {hub.served.proc.pid}, open files {limit:,}", file=sys.stderr)
            cap = min(limit, hard) - SPARE_FILES if kind == "SSE" else None
            steps, why = asyncio.run(_measured(hub, kind, cap))
            results[kind] = (steps, why, idle, limit)
        finally:
            hub.stop()
    hub = _hub()
    try:
        stores = {rate: asyncio.run(_store_latency(hub, rate)) for rate in LOAD_RATES}
    finally:
        hub.stop()
    load_after = os.getloadavg()

    lines = [
        provenance("`make bench-streams` (`python -m bench streams`)", machine),
        f"Load average at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, at the end "
        f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} (1 / 5 / 15 min). "
        f"Open files (RLIMIT_NOFILE): {hard:,}, soft and hard, for this client and the hub "
        f"(was {soft:,} soft); the container refuses to raise the hard limit.",
        "",
    ]
    held = []
    for kind, (steps, why, idle, limit) in results.items():
        lines += [
            f"{kind} (hub idle: {idle / 2**20:.0f} MiB RSS, open files {limit:,}):",
            "",
            *_table(kind, steps, why, idle),
            "",
        ]
        good = [s for s in steps if s.rss <= RSS_LIMIT and s.worst <= FANOUT_LIMIT]
        if good:
            last = good[-1]
            per = (last.rss - idle) / last.streams
            held.append(
                f"{kind} {last.streams:,} measured (≈ {(RSS_LIMIT - idle) / per:,.0f} within "
                "1 GiB at that RSS per stream)"
            )
        else:
            held.append(f"{kind} none")
    lines += [
        "Streams held with every event within 1 s: " + "; ".join(held) + " (target ≥ 10,000).",
        "",
        *(_store_line(rate, *stores[rate]) for rate in LOAD_RATES),
        "",
        NOTES,
        __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
    ]
    return "\n".join(lines)
