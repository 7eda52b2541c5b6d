"""Child processes (ffmpeg, ffprobe, yt-dlp) that never outlive the service.

Every child is started through :class:`Children`, which:

- asks the kernel to SIGKILL the child if this process dies first (``PR_SET_PDEATHSIG``), so
  even a ``kill -9`` of the service leaves no orphan;
- keeps the set of live children, so shutdown can terminate them all and wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["Children", "ToolMissingError"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG: Final = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ToolMissingError(RuntimeError):
    """An external program (ffmpeg, ffprobe, yt-dlp) is not installed."""

    def __init__(self, program: str) -> None:
        super().__init__(
            f"{program} is not installed or not on PATH; install it (apt-get install ffmpeg "
            f"provides ffmpeg and ffprobe; yt-dlp comes with the package) and retry"
        )
        self.program = program


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read and discard until EOF, unless another task already reads this stream."""
    with contextlib.suppress(RuntimeError, ConnectionError):
        while await stream.read(1 << 16):
            pass


class Children:
    """Starts and tracks child processes; :meth:`close` ends those still alive."""

    def __init__(self, grace: float = 2.0) -> None:
        self._live: set[asyncio.subprocess.Process] = set()
        self._grace = grace

    @property
    def live(self) -> int:
        return sum(1 for p in self._live if p.returncode is None)

    async def spawn(self, argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """``asyncio.create_subprocess_exec`` with the death signal set and tracking on."""
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                preexec_fn=_die_with_parent,
                **kwargs,
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(argv[0]) from exc
        self._live.add(proc)
        proc_done = asyncio.ensure_future(proc.wait())
        proc_done.add_done_callback(lambda _f: self._live.discard(proc))
        return proc

    async def run(
        self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run to completion; returns ``(returncode, stdout, stderr)``. Kills on timeout."""
        proc = await self.spawn(
            argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except (TimeoutError, asyncio.CancelledError):
            await self.stop(proc, grace=0)
            raise
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def stop(self, proc: asyncio.subprocess.Process, grace: float | None = None) -> None:
        """SIGTERM (SIGKILL when ``grace == 0``), SIGKILL after ``grace`` seconds; always reaps.

        ``Process.wait()`` returns only once the child's pipes are closed too, and a pipe whose
        reader stopped reading (a full buffer nobody consumes) never closes. So while waiting we
        drain every pipe that no other task is reading.
        """
        grace = self._grace if grace is None else grace
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if grace == 0:
                    proc.kill()
                else:
                    proc.terminate()
        drains = [asyncio.create_task(_drain(s)) for s in (proc.stdout, proc.stderr) if s]
        try:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace or 0.5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(asyncio.shield(proc.wait()), 10)
        except TimeoutError:
            log.error("child %d did not exit after SIGKILL", proc.pid)
        finally:
            for task in drains:
                task.cancel()
            self._live.discard(proc)

    async def close(self) -> None:
        """End every child still alive; used on shutdown."""
        live = [p for p in self._live if p.returncode is None]
        if live:
            log.info("stopping %d child process(es)", len(live))
        await asyncio.gather(*(self.stop(p) for p in live), return_exceptions=True)
