"""The local preview: the broadcast as HLS on ``http://PREVIEW_HOST:PREVIEW_PORT/``.

An operator checks a playlist and ``FFMPEG_ARGS`` here before going live. The page plays
``/live/live.m3u8`` natively (Safari, recent Chrome) or with the bundled hls.js.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from opskit.procs import Children
from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe
from tgstream.adapters.publisher import Publisher
from tgstream.errors import OutputError
from tgstream.ports import EngineEvents

__all__ = ["Preview"]

log = logging.getLogger(__name__)


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, static: Path, **kwargs: Any) -> None:
        self._static = static
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean in ("/", "/index.html") or clean.endswith(".js"):
            name = "index.html" if clean in ("/", "/index.html") else clean.rsplit("/", 1)[-1]
            return str(self._static / name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("preview http: " + format, *args)


class Preview:
    recipe: Recipe = "ts"
    name = "preview"
    reports_flowing = True
    """Its publisher logs "first frame written to the preview output" once segments are written."""

    def __init__(
        self, children: Children, host: str, port: int, events: EngineEvents | None = None
    ) -> None:
        self.host, self.port = host, port
        self._dir = Path(tempfile.mkdtemp(prefix="tgstream-preview-"))
        (self._dir / "live").mkdir()
        self._publisher = Publisher(
            children, "hls", str(self._dir / "live" / "live.m3u8"), events, name="preview"
        )
        self._server: ThreadingHTTPServer | None = None
        self._static_ctx = resources.as_file(
            resources.files("tgstream.adapters") / "preview_static"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def open(self) -> None:
        static = self._static_ctx.__enter__()
        handler = functools.partial(_Handler, directory=str(self._dir), static=static)
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise OutputError(
                f"preview cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "set PREVIEW_PORT to a free port or stop what uses it"
            ) from None
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, name="preview-http", daemon=True
        ).start()
        await self._publisher.open()
        log.info("preview on %s (HLS at %slive/live.m3u8)", self.url, self.url)

    async def write(self, unit: Unit) -> None:
        await self._publisher.write(unit)

    async def close(self) -> None:
        await self._publisher.close()
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        self._static_ctx.__exit__(None, None, None)
        shutil.rmtree(self._dir, ignore_errors=True)
