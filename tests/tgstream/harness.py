"""Real parts for tgstream's tests: an nginx-rtmp server, an RTMP reader, a loopback HTTP
server, and the ``tgstream`` process itself. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on loopback; yields the base URL (missing files answer 404)."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Nginx:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]

    def url(self, name: str = "test") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def wait_publish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.publishes() == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing published to nginx within {timeout}s")
            time.sleep(0.02)

    def publishes(self) -> int:
        """How many publish connections the server has seen."""
        log = (self.workdir / "error.log").read_text(errors="replace")
        return len(re.findall(r"publish: name='", log))


@contextlib.contextmanager
def nginx_rtmp(tmp: Path) -> Iterator[Nginx]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"load_module {NGINX_RTMP_MODULE};\n"
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
        "events { worker_connections 64; }\n"
        "rtmp { server { "
        f"listen 127.0.0.1:{port}; chunk_size 4096; "
        "application live { live on; record off; idle_streams off; } } }\n"
    )
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"nginx-rtmp did not start: {err}")
        time.sleep(0.05)
    try:
        yield Nginx(port, tmp, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@dataclass
class Frame:
    arrived: float
    pts: float
    y: float
    u: float
    v: float

    @property
    def color(self) -> str:
        """Classify the solid test colours; anything else is 'other' (slate, patterns)."""
        for name, (y, u, v) in COLORS_YUV.items():
            # The slate carries text, which moves its mean a little.
            if abs(self.y - y) < 12 and abs(self.u - u) < 12 and abs(self.v - v) < 12:
                return name
        return "other"


# BT.601 limited-range means of ffmpeg's named colours, as showinfo reports them
# ("green" is HTML green, #008000).
COLORS_YUV = {
    "red": (81, 90, 240),
    "green": (81, 91, 81),
    "blue": (41, 240, 110),
    "white": (235, 128, 128),
    "slate": (44, 142, 120),
}
_SHOWINFO = re.compile(r"pts_time:\s*([-\d.]+).*?mean:\[(\d+) (\d+) (\d+)\]")


@dataclass
class RtmpReader:
    """Plays an RTMP URL with one connection and records every decoded video frame."""

    url: str
    frames: list[Frame] = field(default_factory=list)
    connections: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Connect once the stream is published (nginx drops players of idle streams)."""
        self._thread = threading.Thread(target=self._run, args=(timeout,), daemon=True)
        self._thread.start()

    def _run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.connections += 1
            self.proc = subprocess.Popen(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-hide_banner",
                    "-loglevel",
                    "info",
                    "-rw_timeout",
                    "15000000",
                    "-i",
                    self.url,
                    "-map",
                    "0:v",
                    "-vf",
                    "showinfo",
                    "-f",
                    "null",
                    "-",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                match = _SHOWINFO.search(raw.decode(errors="replace"))
                if match:
                    pts, y, u, v = match.groups()
                    self.frames.append(
                        Frame(time.monotonic(), float(pts), float(y), float(u), float(v))
                    )
            self.proc.wait()
            self.proc.stderr.close()
            if self.frames:
                return
            self.connections -= 1  # never got a frame: the stream was not published yet
            time.sleep(0.1)

    def wait_frames(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
        if self._thread:
            self._thread.join(10)

    def colors(self) -> list[str]:
        """Runs of colours in arrival order, e.g. ['red', 'green', 'blue']."""
        runs: list[str] = []
        for frame in self.frames:
            c = frame.color
            if not runs or runs[-1] != c:
                runs.append(c)
        return runs

    def max_pts_gap(self) -> float:
        pts = [f.pts for f in self.frames]
        return max((b - a for a, b in itertools.pairwise(pts)), default=0.0)

    def seconds_of(self, color: str) -> float:
        return sum(1 for f in self.frames if f.color == color) / 30.0

    def monotonic(self) -> bool:
        pts = [f.pts for f in self.frames]
        return all(b > a for a, b in itertools.pairwise(pts))


@dataclass
class Service:
    """A ``tgstream run`` child process with its log captured line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [m for line in list(self.lines) if (m := re.search(pattern, line))]
            if len(matches) >= count:
                return matches[count - 1]
            if self.proc.poll() is not None and len(matches) < count:
                time.sleep(0.2)  # let the pump drain the last lines
                matches = [m for line in self.lines if (m := re.search(pattern, line))]
                if len(matches) >= count:
                    return matches[count - 1]
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {pattern!r}:\n{self.log}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.log}")

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        if self._thread:
            self._thread.join(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        return code

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(20)

    def descendants(self) -> list[int]:
        return descendants(self.proc.pid)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_service(cwd: Path, env: dict[str, str], *args: str) -> Service:
    """``tgstream run`` with only the given settings (no .env, no inherited TG settings)."""
    base = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tgstream", *(args or ("run",))],
        cwd=cwd,
        # The exporter is off unless a test asks for it: services never share a port.
        env={**base, "PYTHONUNBUFFERED": "1", "PROMETHEUS_PORT": "0", **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    service = Service(proc)
    service._thread = threading.Thread(target=service._pump, daemon=True)
    service._thread.start()
    return service


def run_cli(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``tgstream <args>`` to completion with only the given settings; output captured."""
    base = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    }
    return subprocess.run(
        [sys.executable, "-m", "tgstream", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "200", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def on_air(
    cwd: Path, rtmp: Nginx, lines: list[str], **env: str
) -> Iterator[tuple[Service, RtmpReader]]:
    """``tgstream run`` playing ``lines`` (written to ``cwd/playlist.txt``) once into nginx, with
    one reader attached from the moment it publishes. Both are always stopped afterwards."""
    playlist = cwd / "playlist.txt"
    playlist.write_text("\n".join(lines) + "\n")
    settings = {
        "PLAYLIST_FILE": str(playlist),
        "OUTPUT": "rtmp",
        "RTMP_URL": rtmp.url(),
        "LOOP": "0",
        **env,
    }
    service = start_service(cwd, settings)
    try:
        rtmp.wait_publish(30)
        reader = RtmpReader(rtmp.url())
        reader.start()
        try:
            yield service, reader
        finally:
            reader.stop()
    finally:
        service.terminate()


def assert_continuous(reader: RtmpReader, max_gap: float = 0.2) -> None:
    """One connection, timestamps that only go up, no gap between frames above ``max_gap``."""
    assert reader.connections == 1
    backwards = [
        (i, a.pts, b.pts, a.color, b.color)
        for i, (a, b) in enumerate(itertools.pairwise(reader.frames))
        if b.pts <= a.pts
    ]
    assert not backwards, (
        f"timestamps went backwards (frame, pts, next pts, colours): {backwards[:5]}"
    )
    assert reader.max_pts_gap() <= max_gap, f"gap of {reader.max_pts_gap():.3f}s between frames"
