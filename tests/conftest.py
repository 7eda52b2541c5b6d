"""Shared pytest set-up: nothing here talks to the internet; servers bind 127.0.0.1 only."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres import server_url
from tests.services import Nats, PostgreSQL, Redis, provide


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's URL without a database: the one tests/postgres.py names when it
    answers, else a private one started for this session (tests/services.py)."""
    explicit = "CHAT4ALL_TEST_POSTGRES" in os.environ
    with provide(PostgreSQL(server_url(), explicit=explicit)) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server's URL: the one ``CHAT4ALL_TEST_REDIS`` names (default
    ``redis://127.0.0.1:6379``) when it answers, else a private one started for this session
    (tests/services.py). Tests share it: each uses keys of its own."""
    with provide(Redis.from_environment()) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS server's URL with JetStream: the one ``CHAT4ALL_TEST_NATS`` names (default
    ``nats://127.0.0.1:4222``) when it answers with JetStream, else a private one started for
    this session (tests/services.py). Tests share it: each uses streams and subjects of its
    own."""
    with provide(Nats.from_environment()) as url:
        yield url
