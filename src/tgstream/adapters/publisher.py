"""The one long-lived ffmpeg that copies the spliced MPEG-TS to RTMP or to HLS files.

If it exits (the RTMP server went away, the network dropped) it is started again with a
backoff of 1, 2, 4 ... 30 s, and ``output_reconnects`` is counted. While it is down, units are
dropped: the broadcast clock keeps running, so the stream resumes live, not delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Literal

from opskit.procs import Children
from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe, publisher_argv
from tgstream.ports import EngineEvents

__all__ = ["Publisher"]

log = logging.getLogger(__name__)


class Publisher:
    recipe: Recipe = "ts"

    def __init__(
        self,
        children: Children,
        target: Literal["rtmp", "hls"],
        destination: str,
        events: EngineEvents | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or target
        self._children = children
        self._argv = publisher_argv(target, destination)
        self._events = events
        self._proc: asyncio.subprocess.Process | None = None
        self._backoff = 1.0
        self._retry_at = 0.0
        self._stderr: deque[str] = deque(maxlen=6)
        self._started = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def open(self) -> None:
        await self._start()

    async def _start(self) -> None:
        self._proc = await self._children.spawn(
            self._argv, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self._started += 1
        if self._started > 1:
            log.warning("%s publisher restarted (attempt %d)", self.name, self._started - 1)
            if self._events:
                self._events.output_reconnected()
        assert self._proc.stderr is not None
        task = asyncio.create_task(self._pump(self._proc.stderr), name="publisher-stderr")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr.append(text)
                log.warning("%s publisher ffmpeg: %s", self.name, text)

    async def write(self, unit: Unit) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            await self._maybe_restart()
            return
        try:
            proc.stdin.write(unit.data)
            await asyncio.wait_for(proc.stdin.drain(), timeout=5.0)
            self._backoff = 1.0
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            await self._lost()

    async def _lost(self) -> None:
        if self._proc is not None:
            await self._children.stop(self._proc, grace=0)
            log.error(
                "%s output lost (%s); reconnecting in %.0fs",
                self.name,
                " | ".join(self._stderr) or f"exit code {self._proc.returncode}",
                self._backoff,
            )
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)
        self._proc = None

    async def _maybe_restart(self) -> None:
        if self._proc is not None:  # exited on its own
            await self._lost()
            return
        if time.monotonic() >= self._retry_at:
            await self._start()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 3.0)
            await self._children.stop(proc)
        for task in list(self._tasks):
            task.cancel()
