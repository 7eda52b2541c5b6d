"""Shared pytest set-up: nothing here talks to the internet; servers bind 127.0.0.1 only."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres import server_url
from tests.services import PostgreSQL, provide


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's URL without a database: the one tests/postgres.py names when it
    answers, else a private one started for this session (tests/services.py)."""
    explicit = "CHAT4ALL_TEST_POSTGRES" in os.environ
    with provide(PostgreSQL(server_url(), explicit=explicit)) as url:
        yield url
