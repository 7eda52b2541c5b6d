"""The processes of a scale-out chat4all cluster, for tests and benchmarks: ``chat4all api``,
``worker`` and ``relay`` (or ``serve``), each restartable, its log kept across its starts. The
engines they share are the private servers of :mod:`tests.services` (``server()``), which a test
may freeze, kill and restart.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.services import answers, free_port

__all__ = ["Proc", "cli", "first_key", "reclaimed_in"]

START_TIMEOUT = 60.0

_API_READY = "chat4all API on"
_KEY = re.compile(r"(c4a_[A-Za-z0-9_-]+)")
_RECLAIMED = re.compile(r"(\d+) message\(s\) were in flight when")


def reclaimed_in(text: str) -> int:
    """Messages a dispatcher took over from a dead worker, as its log says (each may have
    reached the provider already: the one allowed cause of a duplicate)."""
    return sum(int(n) for n in _RECLAIMED.findall(text))


@dataclass
class Proc:
    """One chat4all process (``api``, ``worker``, ``relay`` or ``serve``), restartable; its
    stderr is kept across every start (``log``)."""

    name: str
    command: str
    env: Mapping[str, str]
    ready: str | None = None
    """A line the process logs once it is ready (default: the API's line for ``api`` and
    ``serve``; for the others: its health route answers)."""
    log: str = ""
    starts: int = 0
    url: str = ""
    """The REST root (``api``, ``serve``) or the health root (the others) of this start."""
    grpc_target: str = ""
    proc: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def serves_api(self) -> bool:
        return self.command in ("api", "serve")

    def start(self) -> None:
        """Start it and wait until it is ready."""
        port, grpc_port = free_port(), free_port()
        env = {
            **self.env,
            "CHAT4ALL_PORT": str(port),
            "CHAT4ALL_GRPC_PORT": str(grpc_port),
        }
        self.url = f"http://127.0.0.1:{port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chat4all", self.command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        pattern = self.ready or (_API_READY if self.serves_api else None)
        seen = threading.Event()
        threading.Thread(target=self._drain, args=(self.proc, seen, pattern), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (seen.is_set() if pattern else answers("127.0.0.1", port, 0.2)):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} was not ready in {START_TIMEOUT:g} s:\n{self.tail()}"
                )
            seen.wait(0.05)

    def _drain(
        self, proc: subprocess.Popen[str], seen: threading.Event, pattern: str | None
    ) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                with self._lock:
                    self.log += line
                if pattern and pattern in line:
                    seen.set()

    def tail(self, lines: int = 30) -> str:
        with self._lock:
            return "\n".join(self.log.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``, and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, as systemd or Kubernetes stop it; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def reclaimed(self) -> int:
        with self._lock:
            return reclaimed_in(self.log)


def first_key(log: str) -> str | None:
    found = _KEY.search(log)
    return found.group(1) if found else None


def cli(env: Mapping[str, str], *args: str) -> str:
    """``chat4all <args>`` with ``env`` (a migration, a key): its stdout; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "chat4all", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"chat4all {' '.join(args)}: {done.stderr}"
    return done.stdout
