"""Schema migrations (Alembic). ``SqlStore.open`` brings a database to the newest revision before
anything else touches it; ``chat4all migrate`` does the same on demand and says what it did.

The scripts live in ``migrations/versions``, one per schema change, numbered. A database made
before migrations existed (tables, no ``alembic_version``) is stamped as revision ``0001``, the
schema of that release, and upgraded from there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["upgrade", "revisions", "target_metadata", "alembic_config", "BASELINE"]

BASELINE: Final = "0001"
"""The schema of the release before migrations (what ``metadata.create_all`` made)."""
_SCRIPTS: Final = Path(__file__).with_name("migrations")


def target_metadata() -> sa.MetaData:
    """Every table of the store (each module adds its own tables to the shared metadata)."""
    from chat4all.adapters.storage import audit, keys, media, sql, webhooks  # noqa: F401, PLC0415

    return sql.metadata


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection) -> tuple[str | None, str | None]:
    before = MigrationContext.configure(connection).get_current_revision()
    config = alembic_config(connection)
    if before is None and sa.inspect(connection).has_table("messages"):
        command.stamp(config, BASELINE)
        before = BASELINE
    command.upgrade(config, "head")
    return before, MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the database to the newest revision, in one transaction; ``(before, after)`` (the
    caller logs it: Alembic's own step-by-step lines stay below WARNING)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade)


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]
