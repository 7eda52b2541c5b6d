"""Real parts for tgstream's tests: an nginx-rtmp server, an RTMP reader, a loopback HTTP
server, and the ``tgstream`` process itself. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar


class _Attached(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


_R = TypeVar("_R", bound=_Attached)

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
    """A private nginx-rtmp on loopback. With ``record``, every publish is also written to its
    own FLV file (:meth:`recordings`): what the server received, frame by frame."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    record: bool = False
    idle_streams: bool = False
    """nginx-rtmp's default is on (players of an unpublished stream wait for it); the tests
    turn it off so that players connect only once the stream is published."""

    def url(self, name: str = "test") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def wait_publish(self, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.publishes() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing published to nginx within {timeout}s")
            time.sleep(0.02)

    def publishes(self) -> int:
        """How many publish connections the server has seen (across restarts)."""
        log = (self.workdir / "error.log").read_text(errors="replace")
        return len(re.findall(r"publish: name='", log))

    def recordings(self) -> list[Path]:
        """One FLV per publish, oldest first (nginx names them by the second they began)."""
        return sorted((self.workdir / "rec").glob("*.flv"), key=lambda p: p.stat().st_mtime_ns)

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`) on the same port."""
        conf = self.workdir / "nginx.conf"
        record = (
            f"record all; record_path {self.workdir}/rec; record_unique on; "
            if self.record
            else "record off; "
        )
        idle = "" if self.idle_streams else "idle_streams off; "
        (self.workdir / "rec").mkdir(exist_ok=True)
        conf.write_text(
            f"load_module {NGINX_RTMP_MODULE};\n"
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {self.workdir}/nginx.pid;\nerror_log {self.workdir}/error.log info;\n"
            "events { worker_connections 64; }\n"
            "rtmp { server { "
            f"listen 127.0.0.1:{self.port}; chunk_size 4096; "
            f"application live {{ live on; {record}{idle} }} }} }}\n"
        )
        proc = self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"nginx-rtmp did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server; its clients lose their connections, the port is free again."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@contextlib.contextmanager
def nginx_rtmp(tmp: Path, record: bool = False, idle_streams: bool = False) -> Iterator[Nginx]:
    tmp.mkdir(parents=True, exist_ok=True)
    server = Nginx(free_port(), tmp, record=record, idle_streams=idle_streams)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def decoded_frames(path: Path) -> tuple[list[Frame], str]:
    """Every video frame of a recording as the reader would classify it, and the decoder's
    error messages (empty when it decodes cleanly)."""
    run = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "info",
            "-i",
            str(path),
            "-map",
            "0:v",
            "-vf",
            "showinfo",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    frames, errors = [], []
    for line in run.stderr.splitlines():
        if match := _SHOWINFO.search(line):
            pts, y, u, v = match.groups()
            frames.append(Frame(0.0, float(pts), float(y), float(u), float(v)))
        elif re.search(r"error|corrupt|invalid|missing", line, re.IGNORECASE):
            errors.append(line)
    return frames, "\n".join(errors)


def packets(path: Path) -> list[dict[str, Any]]:
    """ffprobe's packets of a recording: codec_type, pts_time, flags ('K' for keyframes)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,dts_time,flags",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return list(json.loads(out).get("packets", []))


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
def played_into(
    cwd: Path, rtmp: Nginx, lines: list[str], attach: Callable[[str], _R], **env: str
) -> Iterator[tuple[Service, _R]]:
    """``tgstream run`` playing ``lines`` (written to ``cwd/playlist.txt``) once into nginx,
    with ``attach(url)``'s reader or recorder started from the moment it publishes. Both are
    always stopped afterwards."""
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
        reader = attach(rtmp.url())
        reader.start()
        try:
            yield service, reader
        finally:
            reader.stop()
    finally:
        service.terminate()


def on_air(
    cwd: Path, rtmp: Nginx, lines: list[str], **env: str
) -> contextlib.AbstractContextManager[tuple[Service, RtmpReader]]:
    """:func:`played_into` with an :class:`RtmpReader` (every decoded frame)."""
    return played_into(cwd, rtmp, lines, RtmpReader, **env)


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


@dataclass
class Packet:
    """One FLV tag as an RTMP player received it: when, which stream, its timestamps (s)."""

    arrived: float
    kind: str  # "video" or "audio"
    dts: float
    pts: float
    key: bool


@dataclass
class FlvRecorder:
    """Records an RTMP stream as it arrives: every packet stamped with its arrival time, and
    the bytes in ``path`` (FLV) for ffprobe. One connection, made once the stream is
    published (retried until it yields data, like :class:`RtmpReader`)."""

    url: str
    path: Path
    packets: list[Packet] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> None:
        self._thread = threading.Thread(target=self._run, args=(timeout,), daemon=True)
        self._thread.start()

    def _run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.packets:
            self.proc = subprocess.Popen(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-rw_timeout",
                    "15000000",
                    "-i",
                    self.url,
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    "-flush_packets",
                    "1",
                    "-f",
                    "flv",
                    "pipe:1",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert self.proc.stdout is not None
            with self.path.open("wb") as out:
                self._parse(self.proc.stdout.fileno(), out)
            self.proc.wait()
            self.proc.stdout.close()
            if not self.packets:
                time.sleep(0.1)

    def _parse(self, fd: int, out: Any) -> None:
        buf = b""
        pos = 0
        header_done = False
        while chunk := os.read(fd, 1 << 16):
            arrived = time.monotonic()
            out.write(chunk)
            buf = buf[pos:] + chunk
            pos = 0
            if not header_done:
                if len(buf) < 13:
                    continue
                pos = int.from_bytes(buf[5:9], "big") + 4
                header_done = True
            while len(buf) - pos >= 11:
                kind, size = buf[pos], int.from_bytes(buf[pos + 1 : pos + 4], "big")
                if len(buf) - pos < 11 + size + 4:
                    break
                ms = int.from_bytes(buf[pos + 4 : pos + 7], "big") | buf[pos + 7] << 24
                data = buf[pos + 11 : pos + 11 + size]
                pos += 11 + size + 4
                if kind == 9 and len(data) >= 5 and data[1] == 1:  # AVC NAL units
                    cts = int.from_bytes(data[2:5], "big", signed=True)
                    key = data[0] >> 4 == 1
                    self.packets.append(Packet(arrived, "video", ms / 1000, (ms + cts) / 1000, key))
                elif kind == 8 and len(data) >= 2 and data[1] == 1:  # AAC raw frame
                    self.packets.append(Packet(arrived, "audio", ms / 1000, ms / 1000, True))

    def wait_packets(self, n: int, timeout: float, kind: str = "video") -> None:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
        if self._thread:
            self._thread.join(10)

    def of(self, kind: str) -> list[Packet]:
        return [p for p in self.packets if p.kind == kind]

    def lag_spread(self, kind: str = "video", skip: float = 2.0) -> float:
        """How unevenly packets arrived against their timestamps: the spread of (arrival -
        DTS) over the packets after the first ``skip`` seconds of content (the player's own
        probing reads those at once). About zero for content paced frame by frame; the length
        of a burst for content sent in bursts."""
        packets = self.of(kind)
        lags = [p.arrived - p.dts for p in packets if p.dts - packets[0].dts >= skip]
        return max(lags) - min(lags)


def decode_errors(path: Path) -> tuple[int, int, str]:
    """Decode every video frame of a recording: (packets, frames decoded, decoder errors)."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-count_packets",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_packets,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (stream,) = json.loads(probe.stdout)["streams"]
    errors = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return int(stream["nb_read_packets"]), int(stream["nb_read_frames"]), errors.stderr.strip()
