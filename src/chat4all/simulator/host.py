"""Serving simulators: each channel's simulator on loopback, several on one port.

The embedded default (and ``chat4all simulator``) serves every channel's simulator on one port,
each under its channel's name: ``http://127.0.0.1:8081/<channel>`` is that provider's API root.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from chat4all.plugin import Simulator

__all__ = ["QuietServer", "serving", "running_simulators"]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the process's lifecycle owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """``app`` served for the duration; yields its base URL."""
    server = QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # a parked long poll must not hold the exit
        )
    )
    task = asyncio.create_task(server.serve(), name="simulator")
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running_simulators(
    simulators: Mapping[str, Simulator], host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[dict[str, str]]:
    """Every simulator on one port, each under ``/<channel>``; yields each one's base URL."""
    app = Starlette(routes=[Mount(f"/{name}", app=sim.app()) for name, sim in simulators.items()])
    async with serving(app, host, port) as url:
        yield {name: f"{url}/{name}" for name in simulators}
