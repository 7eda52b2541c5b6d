"""The database connection: engines, transactions and, on SQLite only, the writer machinery.

:class:`Database` is the one way the stores write. On SQLite (one writer at a time anyway) writes
take turns on an asyncio lock, so a transaction never fails upgrading its read lock ("database
is locked"); batch writes run in one writer thread on a synchronous engine (one hand-off to the
event loop per batch), and a checkpointer keeps the WAL short beside them. On PostgreSQL none of
that exists: every write is a plain transaction of the async engine, and :class:`PostgresLimits`
bounds the pool and how long a connection, a free connection or a statement may take.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from chat4all.adapters.storage import migrate
from chat4all.errors import StoreUnavailable

__all__ = [
    "Database",
    "PostgresLimits",
    "SQLITE_BUSY_MS",
    "CLIENT_MARGIN",
    "after_commit",
    "sqlite_url",
    "upsert",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_MS: Final = 5000
"""Milliseconds a SQLite write waits for another writer's lock, by default
(``CHAT4ALL_SQLITE_BUSY_MS``)."""

CLIENT_MARGIN: Final = 2.0
"""Seconds past the statement timeout after which the client gives up on a statement itself
(asyncpg's ``command_timeout``): a server that answers cancels the statement at its
``statement_timeout`` and says so; this one is for a server that cannot answer at all (frozen,
cut off)."""

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresLimits:
    """PostgreSQL only (asyncpg): the pool of each engine, and how long things may take
    (``CHAT4ALL_DATABASE_*``). Past any of them the caller gets :class:`StoreUnavailable`
    (a 503 with Retry-After), never a hang."""

    pool_size: int = 5
    """Connections each engine keeps open."""
    max_overflow: int = 10
    """Connections opened beyond ``pool_size`` under load, closed once given back."""
    pool_timeout: float = 10.0
    """Seconds to wait for a free connection when all ``pool_size + max_overflow`` are busy."""
    connect_timeout: float = 5.0
    """Seconds to open a connection (TCP, TLS, authentication)."""
    statement_timeout: float = 30.0
    """Seconds one statement may run, waiting for locks included (the server's
    ``statement_timeout``; the client gives up :data:`CLIENT_MARGIN` seconds later on a
    server that does not answer); ``0``: no limit."""

    def engine_options(self, url: sa.URL) -> dict[str, Any]:
        """``create_async_engine``'s keywords for ``url`` (none but PostgreSQL's)."""
        if url.get_backend_name() != "postgresql":
            return {}
        return {
            "poolclass": _Pool,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
            "connect_args": self.connect_args(url),
        }

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        """The driver's connection keywords (asyncpg's; none for another driver)."""
        if url.get_driver_name() != "asyncpg":
            return {}
        args: dict[str, Any] = {"timeout": self.connect_timeout}
        if self.statement_timeout > 0:
            milliseconds = max(1, round(self.statement_timeout * 1000))
            args["server_settings"] = {"statement_timeout": str(milliseconds)}
            args["command_timeout"] = self.statement_timeout + CLIENT_MARGIN
        return args


class _Pool(AsyncAdaptedQueuePool):
    """The async queue pool, whose wait for a free connection past ``pool_timeout`` is
    :class:`StoreUnavailable` (SQLAlchemy raises its own ``TimeoutError`` there, outside the
    ``handle_error`` hook that maps every other such failure)."""

    def connect(self) -> Any:
        try:
            return super().connect()
        except sa.exc.TimeoutError:
            raise StoreUnavailable(
                f"no free database connection within {self.timeout():g} s (all "
                f"{self.size() + self._max_overflow} in use); retry in a moment"
            ) from None
        except OSError as exc:  # TimeoutError among them: asyncpg's own, not the driver's Error
            raise StoreUnavailable(
                f"cannot connect to the database ({type(exc).__name__}); retry in a moment"
            ) from exc


_AFTER_COMMIT: Final = "chat4all.after_commit"


def after_commit(conn: AsyncConnection | sa.Connection, call: Callable[[], None]) -> None:
    """Have ``call()`` run on the event loop once the transaction of ``conn`` (one that
    :class:`Database` opened) committed; never when it rolls back. A failing ``call`` is logged:
    what committed stays committed."""
    sync = conn.sync_connection if isinstance(conn, AsyncConnection) else conn
    assert sync is not None
    sync.info[_AFTER_COMMIT].append(call)


def _begun(conn: sa.Connection) -> list[Callable[[], None]]:
    calls: list[Callable[[], None]] = []
    conn.info[_AFTER_COMMIT] = calls  # the pooled connection's info outlives the transaction
    return calls


def _run(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        try:
            call()
        except Exception:
            log.exception("a call after a commit failed (the commit stands)")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def upsert(conn: AsyncConnection | sa.Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT support, in the connection's dialect (SQLite, PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


class Database:
    """An async engine and, on a SQLite file, the writer thread's synchronous engine; and the
    engine the read-only queries use (:meth:`read`): a replica's, or the same one."""

    def __init__(
        self,
        engine: AsyncEngine,
        writer: sa.Engine | None = None,
        reader: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = reader if reader is not None else engine
        """Where :meth:`read` connects: a read replica, or :attr:`engine` itself."""
        self._sync_writer = writer
        """SQLite: a synchronous engine batch writes use, from one thread, so a batch costs the
        event loop one hand-off instead of one per statement (each of which waited for a turn
        of a busy loop while the writer lock was held)."""
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sql-writer")
            if writer is not None
            else None
        )
        self._checkpoints = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sql-ckpt")
            if writer is not None
            else None
        )
        self._checkpointer: asyncio.Task[None] | None = None
        self._written = 0
        """Writer-thread transactions so far (the checkpointer skips idle spells)."""
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.migrated: tuple[str | None, str | None] = (None, None)
        """Schema revisions before and after :meth:`open` migrated."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        sqlite_busy_ms: int = SQLITE_BUSY_MS,
        read_url: str = "",
        postgres: PostgresLimits | None = None,
    ) -> Database:
        """Connect and migrate to the newest schema. ``sqlite_busy_ms``: how long a SQLite
        write waits for another writer's lock before it is :class:`StoreUnavailable`.
        ``read_url``: a read replica of ``url`` for :meth:`read`, a pool of its own (never
        migrated nor written; empty: ``url`` itself); one that cannot be reached is
        :class:`StoreUnavailable`, saying so. ``postgres``: the pools' sizes and the timeouts
        on PostgreSQL (``None``: SQLAlchemy's and asyncpg's defaults, no statement timeout);
        the migration runs on a connection of its own without a statement timeout (a
        migration may build an index, or wait for another process's migration)."""
        limits = postgres or _DRIVER_DEFAULTS
        parsed = sa.make_url(url)
        engine = create_async_engine(  # values stay out of errors
            parsed, hide_parameters=True, **limits.engine_options(parsed)
        )
        writer = None
        if engine.dialect.name == "sqlite":
            pragmas = functools.partial(_sqlite_pragmas, busy_ms=sqlite_busy_ms)
            sa.event.listen(engine.sync_engine, "connect", pragmas)
            if engine.url.database not in (None, "", ":memory:"):  # a file both engines share
                writer = sa.create_engine(
                    engine.url.set(drivername="sqlite+pysqlite"), hide_parameters=True
                )
                sa.event.listen(writer, "connect", pragmas)
                sa.event.listen(writer, "connect", _no_autocheckpoint)
        reader = None
        if read_url:
            parsed_read = sa.make_url(read_url)
            reader = create_async_engine(
                parsed_read, hide_parameters=True, **limits.engine_options(parsed_read)
            )
        try:
            before, after = await _migrated(engine, limits)
            if reader is not None:  # a wrong replica URL stops the start, as a wrong URL does
                await _reachable(reader)
        except BaseException:
            await engine.dispose()
            if reader is not None:
                await reader.dispose()
            if writer is not None:
                writer.dispose()
            raise
        if before != after:
            log.info("database schema migrated from %s to %s", before or "empty", after)
        for sync in (engine.sync_engine, writer, reader and reader.sync_engine):
            if sync is not None:  # from now on: migrations report their own
                sa.event.listen(sync, "handle_error", _unavailable)
        database = cls(engine, writer, reader)
        database.migrated = (before, after)
        return database

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self._sync_writer is not None and self._executor is not None:
            self._executor.shutdown(wait=True)
            if self._checkpoints is not None:
                self._checkpoints.shutdown(wait=True)
            self._sync_writer.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """The one way to write (SQLite: one writer of this process at a time)."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                calls = _begun(conn.sync_connection)  # type: ignore[arg-type]
                yield conn
            _run(calls)
            return
        async with self._writer:
            async with self.engine.begin() as conn:
                calls = _begun(conn.sync_connection)  # type: ignore[arg-type]
                yield conn
            _run(calls)

    def read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection for read-only queries that may lag a moment behind the writes (the
        replica's, when there is one): the one switch between the primary and a replica."""
        return self.read_engine.connect()

    async def ready(self) -> bool:
        for engine in dict.fromkeys((self.engine, self.read_engine)):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        return True

    async def write(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(conn, *args)`` with a synchronous connection, in a write transaction of its
        own: on a SQLite file the whole of it (statements, commit, fsync) in the writer thread,
        one hand-off for the event loop; elsewhere through ``run_sync``."""
        if self._sync_writer is None or self._executor is None:
            async with self.transaction() as conn:
                return await conn.run_sync(work, *args)
        if self._checkpointer is None or self._checkpointer.done():
            self._checkpointer = asyncio.create_task(  # not the first caller's context
                self._checkpoint_often(), name="checkpoint", context=contextvars.Context()
            )
        assert self._writer is not None
        self._written += 1
        async with self._writer:
            result, calls = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._in_writer_thread, work, args
            )
        _run(calls)
        return result

    def _in_writer_thread(
        self, work: Callable[..., _T], args: tuple[Any, ...]
    ) -> tuple[_T, list[Callable[[], None]]]:
        assert self._sync_writer is not None
        with self._sync_writer.begin() as conn:
            calls = _begun(conn)
            result = work(conn, *args)
        return result, calls

    async def _checkpoint_often(self) -> None:
        """The writer thread's connection does not checkpoint on commit (a checkpoint writes
        and fsyncs the database file: tens of ms with the writer lock held, every ~1000 WAL
        pages under load). Here a PASSIVE checkpoint runs every quarter second from a
        connection and thread of its own, beside the writers; commits stay durable on their
        own (WAL, synchronous=FULL), whatever the checkpoint's progress."""
        assert self._sync_writer is not None
        assert self._checkpoints is not None
        writer, loop, threads = self._sync_writer, asyncio.get_running_loop(), self._checkpoints

        def checkpoint() -> None:
            with writer.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        seen = -1
        while True:
            await asyncio.sleep(0.25)
            if self._written == seen:
                continue
            seen = self._written
            try:
                # the bulk of it beside the writers; then the few frames written meanwhile,
                # writers held off, so that the next write starts the WAL over (a checkpoint
                # that never catches up lets the WAL file grow without end)
                await loop.run_in_executor(threads, checkpoint)
                assert self._writer is not None
                async with self._writer:
                    await loop.run_in_executor(threads, checkpoint)
            except StoreUnavailable:  # busy: next time
                continue


_DRIVER_DEFAULTS: Final = PostgresLimits(
    pool_size=5, max_overflow=10, pool_timeout=30.0, connect_timeout=60.0, statement_timeout=0
)
"""What :meth:`Database.open` does without ``postgres``: SQLAlchemy's pool and asyncpg's own
connect timeout, no statement timeout."""


async def _migrated(engine: AsyncEngine, limits: PostgresLimits) -> tuple[str | None, str | None]:
    """:func:`migrate.upgrade` on ``engine``; on PostgreSQL on a connection of its own without
    a statement timeout (then closed), whose failure to connect is the driver's own error (the
    caller words it)."""
    if engine.dialect.name != "postgresql":
        return await migrate.upgrade(engine)
    migrating = create_async_engine(
        engine.url,
        hide_parameters=True,
        poolclass=NullPool,
        connect_args=dataclasses.replace(limits, statement_timeout=0).connect_args(engine.url),
    )
    try:
        return await migrate.upgrade(migrating)
    finally:
        await migrating.dispose()


async def _reachable(replica: AsyncEngine) -> None:
    try:
        async with replica.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (sa.exc.SQLAlchemyError, OSError, StoreUnavailable) as exc:
        shown = replica.url.render_as_string(hide_password=True)
        raise StoreUnavailable(
            f"cannot reach the read replica {shown}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; check CHAT4ALL_DATABASE_READ_URL "
            "(empty: the reads go to CHAT4ALL_DATABASE_URL)"
        ) from None


_RETRYABLE: Final = ("08", "53", "57P", "57014", "55P03")
"""SQLSTATEs (classes, or codes) of a database that cannot answer now: a connection exception,
insufficient resources (too many connections), the server shutting down or starting, a
statement cancelled (``statement_timeout``), a lock not granted in time."""


def _unavailable(context: sa.engine.ExceptionContext) -> None:
    """A database that cannot answer now (unreachable, the connection cut, a failover, locked
    past ``busy_timeout``, a statement past the statement timeout, the server or the client's
    side of it) is :class:`StoreUnavailable`: a 503 / UNAVAILABLE telling the caller to retry,
    not an internal error. A statement the client gave up on (asyncpg's ``TimeoutError``)
    leaves its connection in doubt: it is dropped, with the rest of the pool. Other errors (a
    constraint, bad data) stay what they are; the driver's message stays out (it may quote
    values)."""
    error = context.sqlalchemy_exception
    original = context.original_exception
    if not isinstance(original, Exception):  # a cancellation (an exit) stays what it is
        return
    if isinstance(original, TimeoutError):
        context.is_disconnect = True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    if (
        context.is_disconnect
        or isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        or sqlstate.startswith(_RETRYABLE)
    ):
        why = "statement timeout" if sqlstate == "57014" else type(original).__name__
        raise StoreUnavailable(f"the database cannot answer now ({why}); retry in a moment") from (
            error or original
        )


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an accepted message survives power loss
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
