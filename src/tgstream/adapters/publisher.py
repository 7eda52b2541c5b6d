"""The one long-lived ffmpeg that copies the spliced MPEG-TS to RTMP or to HLS files.

Each ffmpeg is one *attempt*. Its input opens on PAT, PMT and a keyframe
(:class:`~tgstream.adapters.mpegts.TsEntry`), so it starts, and restarts, without waiting for a
probe to find what it joined. A restarted ffmpeg gets the current GOP at once (the stream since
its keyframe, held up to ``GOP_LIMIT`` bytes): its probe ends at once and the server holds a
keyframe as soon as it accepts the stream, instead of up to a GOP later.

An attempt succeeds when ffmpeg's ``-progress`` report shows bytes written to the
destination: for RTMP that is after the server answered the publish request (ffmpeg opens the
output only then), so "first frame written" and the reset of the backoff mean the server has
the stream, not that a pipe took our bytes.

When the output is lost (ffmpeg exits, or stops taking data for ``WRITE_TIMEOUT`` s), attempts
follow after 1, 2, 4 ... 30 s, one log line each (ffmpeg's own messages of a failed attempt go
to DEBUG; the last one is quoted in that line). An RTMP attempt first checks that the server's
port accepts a TCP connection, and while the server refuses connections the wait is watched:
the next attempt starts within ``WATCH_EVERY`` s of the port opening again, whatever the
backoff. ``output_reconnects`` counts the reconnects that reached the server; the events'
``output_flowing`` says whether viewers get the stream (false from the loss until it is back,
and before the first attempt gets through). While no attempt
runs, units are dropped: the broadcast clock keeps running, so the stream resumes live.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from opskit.procs import Children
from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe, publisher_argv
from tgstream.adapters.mpegts import TsEntry
from tgstream.ports import EngineEvents

__all__ = ["Publisher", "BACKOFF_MAX"]

log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 30.0
WATCH_EVERY: Final = 0.2
"""While the RTMP server refuses connections, how often its port is tried (a TCP connect)."""
CONNECT_TIMEOUT: Final = 5.0
ATTEMPT_TIMEOUT: Final = 20.0
"""An attempt that has not got a byte to the destination by then is given up."""
WRITE_TIMEOUT: Final = 5.0
MESSAGE_HOLD: Final = 1.0
GOP_LIMIT: Final = 8 << 20
"""The most of the current GOP held for a restarted ffmpeg (a 2 s GOP at 32 Mbit/s)."""
_RTMP_PORTS: Final = {"rtmp": 1935, "rtmps": 443, "rtmpe": 1935, "rtmpt": 80, "rtmpts": 443}


@dataclass
class _Attempt:
    """One publisher ffmpeg and what it said."""

    proc: asyncio.subprocess.Process
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    stalled: bool = False
    timed_out: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Publisher:
    recipe: Recipe = "ts"
    reports_flowing = True
    """Logs "first frame written to the <name> output" itself, once the destination has it."""

    def __init__(
        self,
        children: Children,
        target: Literal["rtmp", "hls"],
        destination: str,
        events: EngineEvents | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name or target
        self._children = children
        self._argv = publisher_argv(target, destination)
        self._events = events
        self._clock = clock
        self._entry = TsEntry(gop_limit=GOP_LIMIT)
        self._current: _Attempt | None = None
        self._address = _tcp_address(destination) if target == "rtmp" else None
        self._task: asyncio.Task[None] | None = None
        self._first_try = asyncio.Event()
        self._closing = False
        self.attempts = 0
        """Attempts made so far (the first connection included)."""
        self.reconnects = 0
        """Reconnects that reached the destination after it was lost."""
        self._failed = 0
        """Attempts in a row that did not reach the destination."""
        self._lost_at: float | None = None
        self._on_air_once = False

    @property
    def connected(self) -> bool:
        """An ffmpeg runs and the destination has taken data from it."""
        current = self._current
        return current is not None and current.flowing.is_set() and current.proc.returncode is None

    async def open(self) -> None:
        if self._events:
            self._events.output_flowing(False)  # until the destination has the stream
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-publisher")
        # The first units must find the first ffmpeg: wait for it (or for its first failure).
        first = asyncio.ensure_future(self._first_try.wait())
        try:
            await asyncio.wait({self._task, first}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()
        if self._task.done():
            self._task.result()  # raises what ended it (ffmpeg missing)

    async def write(self, unit: Unit) -> None:
        data = self._entry.feed(unit.data)  # always: it keeps the latest PAT and PMT
        current = self._current
        if not data or current is None or current.proc.returncode is not None:
            return
        stdin = current.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            await asyncio.wait_for(stdin.drain(), WRITE_TIMEOUT)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it exited: _run reports why
        except TimeoutError:
            current.stalled = True
            with contextlib.suppress(ProcessLookupError):
                current.proc.kill()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        current, self._current = self._current, None
        if current is None:
            return
        proc = current.proc
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 3.0)  # lets ffmpeg finish its output
        await self._children.stop(proc)
        for task in current.tasks:
            task.cancel()

    # ---- attempts ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self.attempts += 1
            flowed, why, refused = await self._attempt()
            if flowed:
                self._failed, self._lost_at = 0, self._clock()
                if self._events:
                    self._events.output_flowing(False)
                log.error(
                    "%s output lost (%s); reconnecting in %.0fs", self.name, why, BACKOFF_FIRST
                )
                delay = BACKOFF_FIRST
            else:
                self._failed += 1
                delay = min(BACKOFF_FIRST * 2**self._failed, BACKOFF_MAX)
                log.warning(
                    "%s output: %s %d failed (%s); next attempt in %.0fs",
                    self.name,
                    "attempt" if self._lost_at is None else "reconnect attempt",
                    self._failed,
                    why,
                    delay,
                )
            await self._wait(delay, watch=refused)

    async def _attempt(self) -> tuple[bool, str, bool]:
        """One ffmpeg, until it ends. Returns whether it reached the destination, why it ended
        (or failed), and whether the server refused connections (then the wait is watched)."""
        try:
            if self._address is not None:
                problem = await _tcp_check(*self._address)
                if problem is not None:
                    return False, problem, True
            current = await self._spawn()
        finally:
            self._first_try.set()
        timeout = asyncio.ensure_future(asyncio.sleep(ATTEMPT_TIMEOUT))
        flowing = asyncio.ensure_future(current.flowing.wait())
        exited = asyncio.ensure_future(current.proc.wait())
        try:
            await asyncio.wait({flowing, exited, timeout}, return_when=asyncio.FIRST_COMPLETED)
            flowed = current.flowing.is_set()
            if flowed:
                self._on_air()
                await exited
            elif current.proc.returncode is None:
                current.timed_out = True
        finally:
            timeout.cancel()
            flowing.cancel()
        await self._end(current)
        self._current = None
        why = self._why(current)
        return flowed, why, not flowed and os.strerror(errno.ECONNREFUSED) in why

    def _on_air(self) -> None:
        """The destination has the stream: say so, count a reconnect, reset the backoff."""
        if not self._on_air_once:
            self._on_air_once = True
            log.info("first frame written to the %s output", self.name)
        if self._lost_at is not None:
            self.reconnects += 1
            log.info(
                "%s output back: reconnect attempt %d reached the server, %.1fs after the loss",
                self.name,
                self._failed + 1,
                self._clock() - self._lost_at,
            )
            if self._events:
                self._events.output_reconnected()
        if self._events:
            self._events.output_flowing(True)
        self._lost_at, self._failed = None, 0

    async def _spawn(self) -> _Attempt:
        proc = await self._children.spawn(
            self._argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        current = _Attempt(proc)
        assert proc.stdout is not None
        assert proc.stderr is not None
        current.tasks = [
            asyncio.create_task(self._progress(current, proc.stdout), name="publisher-progress"),
            asyncio.create_task(self._messages(current, proc.stderr), name="publisher-stderr"),
        ]
        self._entry.rejoin()  # from here on, write() feeds it from the next keyframe
        self._current = current
        return current

    async def _end(self, current: _Attempt) -> None:
        """Stop (if need be) and reap an ffmpeg, and read the last of its messages."""
        await self._children.stop(current.proc, grace=0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*current.tasks), 2.0)

    async def _progress(self, current: _Attempt, stream: asyncio.StreamReader) -> None:
        """``-progress`` blocks. ffmpeg reports only once its output is open (for RTMP: the
        server answered the publish request); bytes written (``total_size``; HLS has none, as
        the muxer writes its own files) or frames muxed mean the stream flows."""
        written = False
        while line := await stream.readline():
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key in ("total_size", "frame", "out_time_us") and value.isdigit():
                written = written or int(value) > 0
            elif key == "progress" and written and not current.flowing.is_set():
                current.flowing.set()

    async def _messages(self, current: _Attempt, stream: asyncio.StreamReader) -> None:
        """ffmpeg's messages: on air, WARNING (a broken splice shows up here), unless ffmpeg
        exits within ``MESSAGE_HOLD`` s: then they belong to its end, which one line reports
        quoting the last of them, as for an attempt that never got on air."""
        loop = asyncio.get_running_loop()
        while line := await stream.readline():
            text = line.decode(errors="replace").strip()  # the log masks the stream key
            if not text:
                continue
            current.stderr.append(text)
            if current.flowing.is_set():
                loop.call_later(MESSAGE_HOLD, self._relay, current, text)
            else:
                self._relay(current, text)

    def _relay(self, current: _Attempt, text: str) -> None:
        on_air = current.flowing.is_set() and current.proc.returncode is None
        log.log(logging.WARNING if on_air else logging.DEBUG, "%s ffmpeg: %s", self.name, text)

    def _why(self, current: _Attempt) -> str:
        if current.stalled:
            return f"ffmpeg took no data for {WRITE_TIMEOUT:.0f}s"
        if current.timed_out:
            return f"nothing reached the destination within {ATTEMPT_TIMEOUT:.0f}s"
        if current.stderr:
            return current.stderr[-1]
        return f"ffmpeg exited with code {current.proc.returncode}"

    async def _wait(self, delay: float, watch: bool) -> None:
        """Sleep ``delay`` s; with ``watch``, end early once the server's port accepts again."""
        deadline = self._clock() + delay
        while (left := deadline - self._clock()) > 0:
            await asyncio.sleep(min(left, WATCH_EVERY) if watch else left)
            if watch and self._address and await _tcp_check(*self._address) is None:
                return


def _tcp_address(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    port = _RTMP_PORTS.get(parts.scheme.lower())
    if port is None or not parts.hostname:
        return None
    try:
        return parts.hostname, parts.port or port
    except ValueError:
        return None


async def _tcp_check(host: str, port: int) -> str | None:
    """``None`` when ``host:port`` accepts a TCP connection, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except TimeoutError:
        return f"no answer from {host}:{port} within {CONNECT_TIMEOUT:.0f}s"
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return f"cannot connect to {host}:{port}: {reason}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
