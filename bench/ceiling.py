"""The ceilings for chat4all's benchmark, on the same framework as the hub (FastAPI on one
uvicorn process, its default loop and HTTP parser, warnings-only logs):

- **one insert**: SQLAlchemy on aiosqlite, SQLite WAL with synchronous=FULL, one insert per
  request (``python -m bench.ceiling PORT DB``);
- **no-op**: the request's JSON body parsed into a dict, as a route's body is, and 202 answered
  with no storage at all (``python -m bench.ceiling PORT``): what the framework costs alone.
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


def noop_app() -> FastAPI:
    api = FastAPI()

    @api.post("/noop", status_code=202)
    async def noop(body: dict[str, Any]) -> dict[str, int]:
        return {"id": len(body)}

    return api


def app(db: str) -> FastAPI:
    # 32 senders' transactions contend for one SQLite file: on a busy machine a writer can wait
    # for the lock longer than sqlite3's default 5 s, and the 500 that follows ends the run.
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}", connect_args={"timeout": 30})

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
    served = app(sys.argv[2]) if len(sys.argv) > 2 else noop_app()
    uvicorn.run(served, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
