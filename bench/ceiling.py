"""The ceiling for chat4all's benchmark: the same framework (FastAPI on uvicorn, SQLAlchemy on
aiosqlite, SQLite WAL with synchronous=FULL) doing nothing but one insert per request.

``python -m bench.ceiling PORT DB``
"""

from __future__ import annotations

import sys
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

rows = sa.Table(
    "rows",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)


def app(db: str) -> FastAPI:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    api = FastAPI()

    @api.on_event("startup")
    async def create() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(rows.metadata.create_all)

    @api.post("/insert", status_code=202)
    async def insert(body: dict[str, Any]) -> dict[str, int]:
        async with engine.begin() as conn:
            result = await conn.execute(rows.insert().values(body=str(body)))
        return {"id": int(result.inserted_primary_key[0])}

    return api


if __name__ == "__main__":
    uvicorn.run(app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
