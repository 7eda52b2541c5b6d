"""``chat4all``: run the hub, manage API keys.

``serve`` runs the whole hub in one process; ``api`` (REST and gRPC) and ``worker`` (the
dispatchers, pollers and housekeeping) run its halves as separate processes, any number of
each, on one PostgreSQL database. The three differ only by the roles they run
(:data:`~chat4all.bootstrap.ROLES`, ``API_ROLES``, ``WORKER_ROLES``); each stops on
SIGTERM/SIGINT and reloads its settings on SIGHUP (replaced channel tokens take effect without
a restart).

Exit codes: 0 ok (stopped by SIGTERM/SIGINT for ``serve``, ``api``, ``worker``); 1 a key to
revoke was not found, or ``audit verify`` found a broken chain; 2 invalid settings (the message
names the key; ``api`` and ``worker`` on the embedded SQLite database), or a ``migrate --to``
URL that is not PostgreSQL's; 3 the database cannot be opened or migrated, the media bucket does
not answer, or a ``migrate --to`` copy failed (the message says why); 4 ``serve``, ``api`` or
``worker`` stopped because one of its tasks died (logged with its traceback): its service
manager should start it again; 5 the ``[chat4all]`` extra is not installed (checked by
``chat4all.__main__`` before this module is imported); 6 ``migrate --to`` refused: the target
database is not empty, or the hub is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Annotated, Final

import sqlalchemy as sa
import typer
from rich.console import Console
from typing_extensions import Unpack

from chat4all import __version__
from chat4all.adapters.storage.audit import AuditLog
from chat4all.adapters.storage.keys import KeyRing, Role
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.transfer import (
    Copied,
    CopyFailed,
    HubInUse,
    TargetNotEmpty,
    check_stopped,
    copy_database,
)
from chat4all.bootstrap import (
    API_ROLES,
    RELAY_ROLES,
    ROLES,
    SIMULATOR_ACCOUNT,
    WORKER_ROLES,
    Hub,
    Injected,
    build_hub,
    open_store,
    reload_settings,
    run_roles,
)
from chat4all.config import Settings, load_settings
from chat4all.errors import Chat4AllError, InvalidRequest, StoreUnavailable
from chat4all.plugin import Simulator
from chat4all.simulator.host import running_simulators
from opskit.lifecycle import run_until_stopped
from opskit.logs import MASKER, setup_logging

__all__ = ["app", "main", "serve_hub", "WORKER_DIED", "TARGET_IN_USE"]

WORKER_DIED: Final = 4
"""``serve``'s (``api``'s, ``worker``'s) exit code when one of its tasks died."""
TARGET_IN_USE: Final = 6
"""``migrate --to``'s exit code when the target database is not empty or the hub still runs."""
_RUN_EXITS: Final = (
    "Exit codes: 0 stopped by SIGTERM/SIGINT; 2 invalid settings; 3 database or media bucket "
    "unavailable; 4 a task died (restart it)."
)
GC_THRESHOLDS: Final = (50_000, 20, 100)
"""The collector's thresholds once a hub runs (``serve``, ``api``, ``worker``; CPython's are 700,
10, 10). With thousands of
live streams, an event's fan-out keeps one wake-up per stream alive at once: at 700 its
short-lived objects were promoted to the oldest generation, whose full collections (~200
tracked objects per idle stream, nothing to free) then stopped the event loop 1.5-2.2 s at
10,000 SSE streams; at 50,000 they die young (docs/benchmarks.md, live streams)."""

log = logging.getLogger("chat4all.cli")
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="chat4all: one API for many messaging channels.",
    epilog=(
        "Exit codes: 0 ok; 1 not found or audit log tampered; 2 invalid settings; "
        "3 database or media bucket unavailable, or the copy failed; 4 a task died (serve, "
        "api, worker; restart it); 5 the chat4all extra is not installed; 6 migrate --to: the "
        "target is not empty or the hub still runs."
    ),
)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(no_args_is_help=True, help="The security audit log.")
app.add_typer(audit_app, name="audit")
err = Console(stderr=True, highlight=False)
EnvFile = Annotated[Path, typer.Option("--env-file", help="Settings file (CHAT4ALL_* keys).")]


def _settings(env_file: Path) -> Settings:
    try:
        settings = load_settings(env_file if env_file.exists() else None)
    except Chat4AllError as exc:
        err.print(f"[bold red]error:[/] invalid settings: {exc}")
        raise typer.Exit(2) from None
    MASKER.add(*settings.secrets())
    return settings


@app.command(epilog=_RUN_EXITS)
def serve(env_file: EnvFile = Path(".env")) -> None:
    """Run the whole hub in one process: the APIs, the dispatchers, pollers and housekeeping,
    and (with no channel account configured) the simulators."""
    _run("serve", ROLES, env_file)


@app.command(epilog=_RUN_EXITS)
def api(env_file: EnvFile = Path(".env")) -> None:
    """Run the REST and gRPC APIs only (any number of them, beside `chat4all worker`
    processes, on one PostgreSQL database); sends are refused (503) while the workers are
    behind (CHAT4ALL_SHED_*)."""
    _run("api", API_ROLES, env_file)


@app.command(epilog=_RUN_EXITS)
def worker(env_file: EnvFile = Path(".env")) -> None:
    """Run the dispatchers (messages, client webhooks, inbound files), the pollers and the
    housekeeping, without the APIs, on one PostgreSQL database shared with `chat4all api`;
    /health, /ready and /metrics on CHAT4ALL_PORT."""
    _run("worker", WORKER_ROLES, env_file)


@app.command(epilog=_RUN_EXITS)
def relay(env_file: EnvFile = Path(".env")) -> None:
    """Run only the relay: the outbox's due messages published to the partitioned log
    (CHAT4ALL_NATS_URL must be set; ``serve`` runs a relay too). Any number may run."""
    _run("relay", RELAY_ROLES, env_file)


def _run(command: str, roles: Sequence[str], env_file: Path) -> None:
    """The life of ``serve``, ``api``, ``worker`` or ``relay``: ``roles`` until a signal stops
    them."""
    settings = _settings(env_file)
    refused = _refused(command, settings)
    if refused is not None:
        err.print(f"[bold red]error:[/] invalid settings: {refused}")
        raise typer.Exit(2)
    setup_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    log.info("chat4all %s %s starting; database %s", command, __version__, settings.database_shown)

    def again() -> Settings:
        return load_settings(env_file if env_file.exists() else None)

    raise typer.Exit(
        run_until_stopped(
            lambda stop: serve_hub(settings, stop, reload=again, roles=roles), _fast_loop()
        )
    )


def _refused(command: str, settings: Settings) -> str | None:
    """Why ``command`` cannot run with ``settings`` (exit 2), or ``None``."""
    if command == "relay" and not settings.NATS_URL:
        return (
            "CHAT4ALL_NATS_URL is empty: the relay publishes to NATS JetStream; set it (and "
            "CHAT4ALL_DATABASE_URL to PostgreSQL)"
        )
    if command != "serve" and sa.make_url(settings.database_url).get_backend_name() == "sqlite":
        return (
            f"CHAT4ALL_DATABASE_URL: `chat4all {command}` runs beside other processes, which the "
            "embedded SQLite database cannot serve safely (its claims and its audit chain rely "
            "on one process); set CHAT4ALL_DATABASE_URL to a PostgreSQL database "
            "(postgresql+asyncpg://...), or run the whole hub in one process with `chat4all "
            "serve`"
        )
    return None


async def serve_hub(
    settings: Settings,
    stop: asyncio.Event,
    reload: Callable[[], Settings] | None = None,
    roles: Sequence[str] = ROLES,
    **overrides: Unpack[Injected],
) -> int:
    """The life of ``roles`` (``serve``'s: every role) until ``stop`` is set (0) or a task
    dies (:data:`WORKER_DIED`), or the start fails (2, 3). With ``reload`` (how to read the
    settings again), SIGHUP applies the settings read again
    (:func:`chat4all.bootstrap.reload_settings`: replaced channel tokens, without a restart).
    ``overrides`` as :func:`chat4all.bootstrap.build_hub`'s."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            built = await stack.enter_async_context(build_hub(settings, stop=stop, **overrides))
            hub = await stack.enter_async_context(run_roles(built, roles))
        except StoreUnavailable as exc:
            err.print(f"[bold red]error:[/] {exc}")
            return 3
        except InvalidRequest as exc:  # settings only checkable at start: TLS files
            err.print(f"[bold red]error:[/] invalid settings: {exc}")
            return 2
        if reload is not None:
            _on_sighup(hub, reload, stack)
        # What startup built (modules, routes, compiled models, the SQL cache) lives as long
        # as the process: out of the collector's sight, a full collection scans only what
        # requests allocate (it took ~100 ms under load, the accept latency's p99 spikes).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        if hub.admin_key is not None:
            err.print("[bold]admin API key (shown once, store it now):[/]\n  " + hub.admin_key)
            for channel in hub.channels.simulators if "api" in roles else ():  # a hint to try
                err.print(
                    f"try: curl -s -X POST {hub.url}/v1/messages -H 'Authorization: "
                    "Bearer <key>' -H 'Content-Type: application/json' -d "
                    f'\'{{"channel": "{channel}", "account": "{SIMULATOR_ACCOUNT}", '
                    '"recipient": "42", "content": {"text": "hello"}}\''
                )
        down = await hub.supervisor.wait()
    if down is not None:
        err.print(
            f"[bold red]error:[/] {down.reason}; chat4all stopped (exit code {WORKER_DIED}) so "
            "that its service manager starts it again; the log above has the traceback"
        )
        return WORKER_DIED
    return 0


def _on_sighup(hub: Hub, load: Callable[[], Settings], stack: contextlib.AsyncExitStack) -> None:
    """SIGHUP (``systemctl reload``, ``kill -HUP``): the settings read again and applied, one
    reload at a time (a second SIGHUP meanwhile waits for the first)."""
    loop = asyncio.get_running_loop()
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[bool]] = set()

    async def reload() -> bool:
        async with lock:
            log.info("SIGHUP received; reloading the settings")
            return await reload_settings(hub, load)

    def on_signal() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_signal)
    stack.callback(loop.remove_signal_handler, signal.SIGHUP)


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (as uvicorn picks it on its own), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def simulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8081,
    channel: Annotated[
        list[str] | None,
        typer.Option(help="A channel to simulate (repeat); default: every channel."),
    ] = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Run the channels' simulators alone, each under /<channel> on one port (point
    CHAT4ALL_<CHANNEL>_API_URL at it). Each knows the accounts configured for its channel and
    the embedded default's sim-bot."""
    settings = _settings(env_file)
    setup_logging("INFO")
    configs = settings.channels
    unknown = sorted(set(channel or ()) - set(configs))
    if unknown:
        err.print(
            f"[bold red]error:[/] no channel {', '.join(unknown)} here; channels: "
            f"{', '.join(configs)}"
        )
        raise typer.Exit(2)
    sims: dict[str, Simulator] = {}
    for name, config in configs.items():
        if not channel or name in channel:
            sims[name] = config.plugin.simulator(config.settings)

    async def main(stop: asyncio.Event) -> int:
        async with running_simulators(sims, port=port) as urls:
            for name, url in urls.items():
                log.info("%s simulator on %s", name, url)
            await stop.wait()
        return 0

    raise typer.Exit(run_until_stopped(main, _fast_loop()))


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[KeyRing, AuditLog]]:
    """The database of ``settings``, for one CLI command; closed however it ends."""
    store = await _open_store(settings)
    try:
        yield KeyRing(store), AuditLog(store)
    finally:
        await store.close()


async def _open_store(settings: Settings) -> SqlStore:
    try:
        return await open_store(settings)
    except StoreUnavailable as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None


@app.command()
def migrate(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help=(
                "Copy this hub's whole database into the empty PostgreSQL database at this "
                "URL (postgresql+asyncpg://user:password@host:port/db). Stop the hub first."
            ),
        ),
    ] = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Bring the database schema to this release's newest revision (serve does it at start);
    with --to, copy the hub into PostgreSQL (docs/chat4all-operations.md, "Moving to
    PostgreSQL")."""
    settings = _settings(env_file)
    if to is not None:
        raise typer.Exit(_copy_to(settings, to))

    async def run() -> tuple[str | None, str | None]:
        store = await _open_store(settings)
        await store.close()
        return store.migrated

    before, after = asyncio.run(run())
    if before == after:
        err.print(f"database schema is current (revision {after})")
    else:
        err.print(f"database schema migrated from {before or 'empty'} to revision {after}")


def _copy_to(settings: Settings, to: str) -> int:
    """``migrate --to``: 0 copied, 2 a bad URL, 3 a database unavailable or the copy failed
    (nothing written), :data:`TARGET_IN_USE` the target not empty or the hub still running."""
    try:
        url = sa.make_url(to)
    except sa.exc.ArgumentError:
        err.print(
            "[bold red]error:[/] --to is not a database URL; expected "
            "postgresql+asyncpg://user:password@host:port/database",
            soft_wrap=True,
        )
        return 2
    MASKER.add(url.password if isinstance(url.password, str) else None)
    if url.get_backend_name() != "postgresql" or url.drivername not in (
        "postgresql",
        "postgresql+asyncpg",
    ):
        err.print(
            f"[bold red]error:[/] --to {url.render_as_string(hide_password=True)}: the copy goes "
            "into PostgreSQL through asyncpg; expected postgresql+asyncpg://user:password@host:"
            "port/database",
            soft_wrap=True,
        )
        return 2
    if not url.database:
        err.print(
            f"[bold red]error:[/] --to {url.render_as_string(hide_password=True)} names no "
            "database; add it at the end of the URL (.../chat4all): a new, empty one",
            soft_wrap=True,
        )
        return 2
    url = url.set(drivername="postgresql+asyncpg")
    target = settings.model_copy(update={"DATABASE_URL": url.render_as_string(False)})
    if target.database_url == settings.database_url:
        err.print(
            "[bold red]error:[/] --to names the hub's own database (CHAT4ALL_DATABASE_URL)",
            soft_wrap=True,
        )
        return 2
    shown = target.database_shown
    source = sa.make_url(settings.database_url)
    if source.get_backend_name() == "sqlite" and source.database:
        path = Path(source.database)
        if not path.is_file():
            err.print(
                f"[bold red]error:[/] no hub database at {path}: run this with the hub's "
                "settings (its .env, CHAT4ALL_DATA_DIR)",
                soft_wrap=True,
            )
            return 3
        try:
            check_stopped(path)
        except HubInUse as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            return TARGET_IN_USE
        except sqlite3.Error as exc:
            err.print(f"[bold red]error:[/] cannot open {path}: {exc}", soft_wrap=True)
            return 3
    err.print(f"copying {settings.database_shown} into {shown}", soft_wrap=True)
    last = [time.monotonic()]

    def progress(table: str, rows: int, done: bool) -> None:
        if done:
            err.print(f"  {table}: {rows} rows", soft_wrap=True)
        elif time.monotonic() - last[0] >= 2:
            last[0] = time.monotonic()
            err.print(f"  {table}: {rows} rows so far", soft_wrap=True)

    async def run() -> Copied:
        old = await _open_store(settings)
        try:
            new = await _open_store(target)
            try:
                return await copy_database(old.db, new.db, progress=progress)
            finally:
                await new.close()
        finally:
            await old.close()

    try:
        copied = asyncio.run(run())
    except TargetNotEmpty as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        return TARGET_IN_USE
    except (CopyFailed, StoreUnavailable, sa.exc.SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(
            f"[bold red]error:[/] the copy failed ({reason}); nothing was "
            f"written to {shown} (one transaction): fix the cause and run it again",
            soft_wrap=True,
        )
        return 3
    err.print(
        f"copied {sum(copied.rows.values())} rows of {len(copied.rows)} tables into {shown}"
        + (
            f"; {copied.released} in-flight deliveries (messages, webhooks) are pending again"
            if copied.released
            else ""
        ),
        soft_wrap=True,
    )
    where = (
        f"the bucket {settings.S3_BUCKET}" if settings.MEDIA_BACKEND == "s3" else settings.media_dir
    )
    err.print(
        f"media files were not copied: they stay in {where}. Next: set CHAT4ALL_DATABASE_URL to "
        f"{shown} (with its password) and point the new deployment at the same media "
        f"({'CHAT4ALL_S3_*' if settings.MEDIA_BACKEND == 's3' else 'CHAT4ALL_MEDIA_DIR'}); "
        f"{settings.database_shown} is left as it was",
        soft_wrap=True,
    )
    return 0


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key belongs to.")],
    role: Annotated[Role, typer.Option(help="admin, sender or reader.")] = Role.SENDER,
    name: Annotated[str, typer.Option(help="A note: who or what uses it.")] = "",
    env_file: EnvFile = Path(".env"),
) -> None:
    """Create a key; it is printed once, only its argon2id hash is stored."""
    settings = _settings(env_file)

    async def create() -> str:
        async with _opened(settings) as (ring, audit):
            key, info = await ring.create(tenant, role, name)
            await audit.append("key_created", tenant, info.id, f"{role.value} {name}")
        return key

    key = asyncio.run(create())
    err.print(f"created a {role.value} key for tenant {tenant!r}; it is shown once:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option()] = None, env_file: EnvFile = Path(".env")
) -> None:
    """List keys (never their secrets)."""
    settings = _settings(env_file)

    async def listed() -> list[str]:
        async with _opened(settings) as (ring, _):
            infos = await ring.list(tenant)
        return [
            f"{i.id}\t{i.tenant}\t{i.role.value}\t{'revoked' if i.revoked else 'active'}\t{i.name}"
            for i in infos
        ]

    for line in asyncio.run(listed()):
        sys.stdout.write(line + "\n")


@keys_app.command("revoke")
def keys_revoke(key_id: str, env_file: EnvFile = Path(".env")) -> None:
    """Revoke a key by its id (the part after c4a_); it stops working within a minute."""
    settings = _settings(env_file)

    async def revoke() -> bool:
        async with _opened(settings) as (ring, audit):
            done = await ring.revoke(key_id)
            if done:
                await audit.append("key_revoked", None, key_id, "revoked from the CLI")
            return done

    if not asyncio.run(revoke()):
        err.print(f"[bold red]error:[/] no active key {key_id!r}; `chat4all keys list` shows them")
        raise typer.Exit(1)
    err.print(f"revoked {key_id}")


@audit_app.command("verify")
def audit_verify(env_file: EnvFile = Path(".env")) -> None:
    """Check the audit log's hash chain; exit 0 intact, 1 tampered (the entry is named)."""
    settings = _settings(env_file)

    async def verify() -> tuple[int, int | None]:
        async with _opened(settings) as (_, audit):
            return await audit.verify()

    checked, broken = asyncio.run(verify())
    if broken is not None:
        err.print(
            f"[bold red]audit log tampered:[/] entry {broken} does not chain "
            f"({checked} intact before it)"
        )
        raise typer.Exit(1)
    err.print(f"audit log intact: {checked} entries")


@audit_app.command("list")
def audit_list(limit: int = 50, env_file: EnvFile = Path(".env")) -> None:
    """The newest audit entries."""
    settings = _settings(env_file)

    async def listed() -> list[str]:
        async with _opened(settings) as (_, audit):
            entries = await audit.entries(limit)
        return [
            f"{e.id}\t{e.at:.3f}\t{e.event}\t{e.tenant or '-'}\t{e.actor or '-'}\t{e.detail}"
            for e in entries
        ]

    for line in asyncio.run(listed()):
        sys.stdout.write(line + "\n")


def main() -> None:
    app()
