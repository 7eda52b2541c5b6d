"""A real systemd booted as PID 1 in private namespaces, for the deployment tests.

:class:`Systemd` puts itself in a cgroup-v2 subtree of its own, unshares pid, mount, cgroup, uts,
ipc and net namespaces, and runs ``inner.sh`` as PID 1: private /run, /tmp, /var/lib, /var/log
and a copy of /etc, so nothing reaches the host (users, unit files, timers' stamps). It boots a
target of its own (``DefaultDependencies=no``), never the default one. Commands run inside with
``nsenter``; the host sees the share folder at the same path as the test does.

Only root on a host with cgroup v2 and unshare can do this; :func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")
TARGET = """\
[Unit]
Description=tgstream test target
DefaultDependencies=no
Wants=systemd-journald.socket systemd-journald.service dbus.socket
"""


def unavailable() -> str | None:
    """Why namespaced systemd cannot run here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "needs root (unshare of pid/mount/cgroup namespaces)"
    if not Path("/lib/systemd/systemd").exists():
        return "no /lib/systemd/systemd"
    if (
        not (CGROUP_ROOT / "cgroup.procs").exists()
        and not Path("/sys/fs/cgroup/cgroup.procs").exists()
    ):
        return "no cgroup v2 hierarchy"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    return None


class Systemd:
    def __init__(self, share: Path, src: Path) -> None:
        self.share = share
        self.src = src
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        """systemd's PID on the host."""
        root = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
        self.cgroup = root / f"tgstream-test-{os.getpid()}-{id(self)}"

    def boot(self, timeout: float = 30.0) -> None:
        self.share.chmod(0o755)  # seen as /run/share: the service user must traverse it
        units = self.share / "units"
        units.mkdir(parents=True, exist_ok=True)
        (units / "tgstream-test.target").write_text(TARGET)
        self.cgroup.mkdir()
        cgroup_procs = self.cgroup / "cgroup.procs"

        def enter_cgroup() -> None:  # in the child, before exec
            cgroup_procs.write_text(str(os.getpid()))
            os.setsid()

        with (self.share / "console.log").open("wb") as console:
            self.proc = self._spawn(console, enter_cgroup)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.pid = int(children.read_text().split()[0])
            if self.pid:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"systemd did not boot:\n{self.console()}")

    def _spawn(self, console: Any, enter_cgroup: Callable[[], None]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--cgroup",
                "--uts",
                "--ipc",
                "--net",
                str(HERE / "inner.sh"),
            ],
            env={"PATH": os.environ["PATH"], "SD_SHARE": str(self.share), "SD_SRC": str(self.src)},
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup,  # noqa: PLW1509 - only writes a file and calls setsid
        )

    def console(self) -> str:
        return (self.share / "console.log").read_text(errors="replace")[-4000:]

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside (mount, pid and net namespaces of systemd)."""
        assert self.pid, "boot() first"
        prefix = ["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "--"]
        if env:
            prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
        done = subprocess.run(
            [*prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, unit: str, timeout: float, *, since_pid: str | None = None) -> float:
        """Seconds until ``unit`` is active (with a MainPID other than ``since_pid``)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            props = self.show(unit, "ActiveState", "MainPID")
            if props.get("ActiveState") == "active" and props.get("MainPID") not in (
                "0",
                since_pid,
            ):
                return time.monotonic() - began
            time.sleep(0.05)
        state = self.show(unit, "ActiveState", "SubState", "Result")
        raise AssertionError(f"{unit} not active within {timeout}s: {state}")

    def host_pid(self, unit: str) -> int:
        """The host PID of ``unit``'s main process (for kill -9 from outside)."""
        inner = self.show(unit, "MainPID")["MainPID"]
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                text = status.read_text()
                nspid = next((ln for ln in text.splitlines() if ln.startswith("NSpid:")), "")
                fields = nspid.split()[1:]
                if len(fields) >= 2 and fields[-1] == inner and self._inside(int(fields[0])):
                    return int(fields[0])
        raise AssertionError(f"no host process for {unit} MainPID {inner}")

    def _inside(self, pid: int) -> bool:
        with contextlib.suppress(OSError):
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{self.pid}/ns/pid")
        return False

    def shutdown(self) -> None:
        if self.pid:
            with contextlib.suppress(Exception):
                self.run("systemctl", "exit", "0", check=False, timeout=10)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
        self._remove_cgroup()

    def _remove_cgroup(self) -> None:
        for _ in range(50):
            leftovers = sorted(self.cgroup.rglob("*/"), key=lambda p: len(p.parts), reverse=True)
            for child in [p for p in self.cgroup.rglob("*") if p.is_dir()][::-1] + leftovers:
                with contextlib.suppress(OSError):
                    child.rmdir()
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()
            if not self.cgroup.exists():
                return
            time.sleep(0.1)


@contextlib.contextmanager
def booted(share: Path, src: Path) -> Iterator[Systemd]:
    sd = Systemd(share, src)
    try:
        sd.boot()
        yield sd
    finally:
        sd.shutdown()


def copy_sources(root: Path, dest: Path, extra: Sequence[str] = ()) -> None:
    """The tracked files of the checkout at ``root`` (what a deploy ships), into ``dest``."""
    files = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in [f.decode() for f in files if f] + list(extra):
        source = root / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
