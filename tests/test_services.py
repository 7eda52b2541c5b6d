"""The tests' services provision themselves: a private PostgreSQL where nothing answers at the
configured URL, the configured server where something does, and an error naming the service
where none can be had."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.postgres import fresh_database
from tests.services import PostgreSQL, ServiceUnavailable, answers, free_port, provide


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
