"""The tests' services provision themselves: a private PostgreSQL, Redis or NATS (with
JetStream) where nothing answers at the configured URL, the configured server where something
does, and an error naming the service where none can be had. A private server can be frozen,
killed and restarted (the chaos tests do)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.postgres import fresh_database
from tests.services import (
    Nats,
    PostgreSQL,
    Redis,
    ServiceUnavailable,
    answers,
    free_port,
    provide,
)


async def test_a_private_postgresql_starts_where_nothing_answers_and_is_gone_after() -> None:
    silent = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}"
    assert not PostgreSQL(silent).answers(silent)

    with provide(PostgreSQL(silent)) as url:
        assert url != silent
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        assert answers("127.0.0.1", parts.port)
        sockets = list(
            Path(tempfile.gettempdir()).glob(f"chat4all-test-postgres-*/.s.PGSQL.{parts.port}")
        )
        assert len(sockets) == 1
        home = sockets[0].parent
        async with fresh_database(url) as database:
            engine = create_async_engine(database)
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("CREATE TABLE t (n integer)"))
                    await conn.execute(sa.text("INSERT INTO t VALUES (41), (1)"))
                    total = (await conn.execute(sa.text("SELECT sum(n) FROM t"))).scalar_one()
                    user = (await conn.execute(sa.text("SELECT current_user"))).scalar_one()
            finally:
                await engine.dispose()
        assert total == 42
        assert user == "postgres"

    assert not answers("127.0.0.1", parts.port)
    assert not home.exists()


def test_the_configured_server_is_used_when_it_lets_the_tests_in(postgres_server: str) -> None:
    def never() -> Path | None:
        raise AssertionError("looked for programs to start a private server")

    with provide(PostgreSQL(postgres_server, binaries=never)) as url:
        assert url == postgres_server


def test_a_server_that_refuses_the_login_is_not_used(postgres_server: str) -> None:
    """A distribution's own cluster with password authentication answers on the port but lets
    no test in: by default a private server is started; named explicitly, it is an error."""
    refusing = postgres_server.replace("://postgres@", "://no_such_role_here@", 1)
    assert "no_such_role_here" in refusing
    assert not PostgreSQL(refusing).answers(refusing)
    with pytest.raises(ServiceUnavailable, match=r"^PostgreSQL: .*refuses the tests' login"):
        PostgreSQL(refusing, explicit=True).answers(refusing)


def test_a_service_that_cannot_be_had_is_an_error_naming_it() -> None:
    silent = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}"
    installs: list[str] = []
    provider = PostgreSQL(silent, binaries=lambda: None, install=lambda: installs.append("pg"))

    with pytest.raises(ServiceUnavailable, match=r"^PostgreSQL: .*initdb.*postgresql"):  # noqa: SIM117
        with provide(provider):
            pass
    assert installs == ["pg"]


def _redis(url: str, *command: str) -> object:
    """``command``'s reply from the Redis at ``url`` (RESP, as far as these tests need it)."""
    parts = urlsplit(url)
    with (
        socket.create_connection((parts.hostname or "", parts.port or 6379), timeout=5) as sock,
        sock.makefile("rb") as replies,
    ):
        sock.sendall(
            b"*%d\r\n" % len(command)
            + b"".join(b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode()) for arg in command)
        )

        def reply() -> object:
            line = replies.readline().decode().rstrip("\r\n")
            kind, rest = line[:1], line[1:]
            if kind in "+-":
                return rest
            if kind == ":":
                return int(rest)
            if kind == "$":
                return None if rest == "-1" else replies.read(int(rest) + 2)[:-2].decode()
            if kind == "*":
                return [reply() for _ in range(int(rest))]
            raise AssertionError(f"unexpected reply {line!r}")

        return reply()


def _jetstream(url: str, subject: str, request: dict[str, object] | None = None) -> dict[str, Any]:
    """The JetStream API's answer at ``subject`` (``$JS.API.`` omitted) from the NATS at ``url``."""
    parts = urlsplit(url)
    payload = json.dumps(request or {}).encode()
    with (
        socket.create_connection((parts.hostname or "", parts.port or 4222), timeout=5) as sock,
        sock.makefile("rb") as lines,
    ):
        assert lines.readline().startswith(b"INFO ")
        sock.sendall(
            b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _INBOX.t 1\r\nPUB $JS.API.%s _INBOX.t %d\r\n%s\r\n"
            % (subject.encode(), len(payload), payload)
        )
        while not (line := lines.readline()).startswith((b"MSG ", b"HMSG ")):
            assert line, "the connection closed"
        assert line.startswith(b"MSG "), f"no JetStream answer: {line!r}"
        answer: dict[str, Any] = json.loads(lines.read(int(line.split()[-1]) + 2))
        return answer


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def test_a_private_redis_starts_where_nothing_answers_and_is_gone_after() -> None:
    silent = f"redis://127.0.0.1:{free_port()}"
    assert not Redis(silent).answers(silent)

    with provide(Redis(silent)) as url:
        assert url != silent
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        assert Redis(silent).answers(url)
        assert _redis(url, "SET", "greeting", "hello") == "OK"
        assert _redis(url, "GET", "greeting") == "hello"
        assert _redis(url, "CONFIG", "GET", "save") == ["save", ""]
        assert _redis(url, "CONFIG", "GET", "appendonly") == ["appendonly", "no"]
        dir_setting = _redis(url, "CONFIG", "GET", "dir")
        assert isinstance(dir_setting, list)
        home = Path(dir_setting[1])
        assert home.parent == Path(tempfile.gettempdir())
        assert home.name.startswith("chat4all-test-redis-")

    assert not answers("127.0.0.1", parts.port)
    assert not home.exists()


def test_a_private_nats_with_jetstream_starts_where_nothing_answers_and_is_gone_after() -> None:
    silent = f"nats://127.0.0.1:{free_port()}"
    assert not Nats(silent).answers(silent)

    with provide(Nats(silent)) as url:
        assert url != silent
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        assert Nats(silent).answers(url)
        created = _jetstream(url, "STREAM.CREATE.T", {"name": "T", "subjects": ["t.>"]})
        assert created.get("config", {}).get("name") == "T", created
        assert _jetstream(url, "INFO")["streams"] == 1

    assert not answers("127.0.0.1", parts.port)


async def _postgres_answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(
            url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres", timeout=2
        )
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.mark.parametrize("provider", [Redis, Nats, PostgreSQL])
async def test_a_private_server_runs_unprivileged_and_can_be_frozen_killed_and_restarted(
    provider: type[Redis | Nats | PostgreSQL],
) -> None:
    """What the chaos tests do to their own servers: SIGSTOP and SIGCONT (the server stops
    answering, then answers again), SIGKILL (gone) and a start on the same URL."""

    async def works(url: str) -> bool:
        if provider is PostgreSQL:
            return await _postgres_answers(url)
        return provider(url).answers(url)

    with provider("unused://").server() as server:
        assert await works(server.url)
        assert server.alive()
        assert os.getpgid(server.pid) == server.pid  # signals to its group reach nothing else
        if os.geteuid() == 0:
            assert os.stat(f"/proc/{server.pid}").st_uid != 0
        assert server.home.is_dir()

        server.freeze()
        try:
            assert not await works(server.url)
        finally:
            server.thaw()
        assert await works(server.url)

        first = server.pid
        server.kill()
        assert not server.alive()
        assert not await works(server.url)

        server.start()
        assert server.pid != first
        assert await works(server.url)
        home = server.home

    assert not server.alive()
    assert not home.exists()


def test_a_private_nats_keeps_its_streams_across_a_restart_and_redis_keeps_nothing() -> None:
    with Nats("unused://").server() as nats, Redis("unused://").server() as redis:
        _jetstream(nats.url, "STREAM.CREATE.KEPT", {"name": "KEPT", "subjects": ["kept.>"]})
        _redis(redis.url, "SET", "forgotten", "1")
        nats.restart()
        redis.restart()
        assert _jetstream(nats.url, "STREAM.INFO.KEPT").get("config", {}).get("name") == "KEPT"
        assert _redis(redis.url, "GET", "forgotten") is None


def test_the_configured_redis_and_nats_are_used_when_they_answer(
    redis_url: str, nats_url: str
) -> None:
    def never() -> Path | None:
        raise AssertionError("looked for a program to start a private server")

    with provide(Redis(redis_url, binary=never)) as url:
        assert url == redis_url
    with provide(Nats(nats_url, binary=never)) as url:
        assert url == nats_url


def test_a_redis_that_refuses_the_tests_is_not_used(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    refusing = f"redis://:wrong-{secrets.token_hex(4)}@{parts.hostname}:{parts.port}"
    assert not Redis(refusing).answers(refusing)
    with pytest.raises(ServiceUnavailable, match=r"^Redis: .*refuses the tests' PING") as caught:
        Redis(refusing, explicit=True).answers(refusing)
    assert "wrong-" not in str(caught.value)


def test_a_nats_server_without_jetstream_is_not_used() -> None:
    port = free_port()
    plain = subprocess.Popen(
        [str(Nats("unused://").program()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: answers("127.0.0.1", port))
        url = f"nats://127.0.0.1:{port}"
        assert not Nats(url).answers(url)
        with pytest.raises(ServiceUnavailable, match=r"^NATS: .*JetStream is not enabled"):
            Nats(url, explicit=True).answers(url)
    finally:
        plain.terminate()
        plain.wait(30)


def test_a_url_of_the_wrong_kind_is_an_error_naming_the_service() -> None:
    with pytest.raises(ServiceUnavailable, match=r"^Redis: .*'127.0.0.1:1' is not a redis://"):
        Redis("http://user:secret@127.0.0.1:1").answers("http://user:secret@127.0.0.1:1")
    with pytest.raises(ServiceUnavailable, match=r"^NATS: .* is not a nats://"):
        Nats("redis://127.0.0.1:1").answers("redis://127.0.0.1:1")


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (Redis, r"^Redis: no redis-server .*redis-server"),
        (Nats, r"^NATS: no nats-server .*nats-server"),
    ],
)
def test_redis_or_nats_that_cannot_be_had_is_an_error_naming_it(
    provider: type[Redis | Nats], message: str
) -> None:
    scheme = provider.name.lower()
    silent = f"{scheme}://127.0.0.1:{free_port()}"
    installs: list[str] = []
    unavailable = provider(silent, binary=lambda: None, install=lambda: installs.append("apt"))

    with pytest.raises(ServiceUnavailable, match=message):  # noqa: SIM117
        with provide(unavailable):
            pass
    assert installs == ["apt"]
