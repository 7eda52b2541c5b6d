"""The services the tests need, had the same way each: the server the settings name when it
answers, else a private one installed (apt) and started for the test session, and stopped and
removed after it. A service that cannot be had is an error naming it, never a skip.

Today PostgreSQL; Redis and NATS follow the same shape: a :class:`Provider` that knows its
configured URL, whether something answers there, and how to run a private server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

__all__ = [
    "ServiceUnavailable",
    "Provider",
    "provide",
    "answers",
    "free_port",
    "apt_install",
    "unprivileged_user",
    "run_as",
    "PostgreSQL",
    "postgres_binaries",
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
        bindir = self._programs()
        user = unprivileged_user(self.name)
        root = Path(tempfile.mkdtemp(prefix="chat4all-test-postgres-"))
        try:
            if user is not None:
                os.chown(root, user.pw_uid, user.pw_gid)
            data = root / "data"
            self._as(user, [str(bindir / "initdb"), *_INITDB_ARGS, "-D", str(data)], root)
            port = self._start(bindir, user, root, data)
            try:
                yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
            finally:
                self._as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                "-w", "-t", str(START_TIMEOUT), "stop"], root)  # fmt: skip
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

    def _start(self, bindir: Path, user: pwd.struct_passwd | None, root: Path, data: Path) -> int:
        """Starts the server on a free port (another one if that port was taken meanwhile)."""
        log = root / "server.log"
        failure: ServiceUnavailable | None = None
        for _ in range(3):
            port = free_port()
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
