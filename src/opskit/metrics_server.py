"""Serve a Prometheus registry (plus a few JSON routes) off the hot path, with port fallback.

The server runs in its own threads (prometheus_client's threading WSGI server), so a scrape is
answered however busy the service's event loop is. When the wanted port is taken, the next
ports up to ``port + span`` are tried (one ERROR, then the port in use is logged). When none is
free, the registry is written every ``interval`` seconds to ``textfile`` in the node_exporter
textfile-collector format (atomically: temporary file, then rename), with one WARNING, and once
more by ``close``, so the file left behind tells the final state. In every case the service
goes on.

>>> from prometheus_client import CollectorRegistry
>>> server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0)
>>> server.start().startswith("http://127.0.0.1:")
True
>>> server.close()
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, write_to_textfile
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

__all__ = ["MetricsServer", "Route", "JsonResponse"]

log = logging.getLogger(__name__)

JsonResponse = tuple[int, dict[str, Any]]
Route = Callable[[], JsonResponse]
"""A JSON route: returns ``(http status, document)``; called on the server's thread."""

_REASONS: Final = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Unavailable"}


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        routes: dict[str, Route] | None = None,
        span: int = 10,
        textfile: Path | None = None,
        interval: float = 15.0,
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._routes = routes or {}
        self._span = span
        self._textfile = textfile
        self._interval = interval
        self._metrics_app = make_wsgi_app(registry)
        self._server: WSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.url: str | None = None
        self.port: int | None = None
        self._writing = False
        """Whether the textfile stands in for the port (written again by ``close``)."""

    def start(self) -> str:
        """Bind and serve; returns the URL served, or the textfile written instead."""
        candidates = (
            [self._port] if self._port == 0 else range(self._port, self._port + self._span + 1)
        )
        busy: list[int] = []
        for port in candidates:
            try:
                server = make_server(
                    self._host, port, self._app, ThreadingWSGIServer, handler_class=_SilentHandler
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                if not busy:
                    log.error(
                        "metrics port %d on %s is taken (%s); trying ports up to %d",
                        port,
                        self._host,
                        exc.strerror,
                        self._port + self._span,
                    )
                busy.append(port)
                continue
            self._server = server
            self.port = server.server_port
            self.url = f"http://{self._host}:{self.port}"
            self._spawn(server.serve_forever, "metrics-http")
            if busy:
                log.warning(
                    "metrics served on port %d instead of %d: scrape %s/metrics",
                    self.port,
                    self._port,
                    self.url,
                )
            else:
                log.info("metrics on %s/metrics (also /healthz, /status)", self.url)
            return self.url
        return self._fall_back(busy)

    def _fall_back(self, busy: Iterable[int]) -> str:
        if self._textfile is None:
            log.warning("no free metrics port (%s taken); metrics are off", _ranges(busy))
            return ""
        log.warning(
            "no free metrics port (%s taken); writing metrics to %s every %gs instead "
            "(node_exporter textfile-collector format)",
            _ranges(busy),
            self._textfile,
            self._interval,
        )
        self._writing = True
        self._write_textfile()
        self._spawn(self._textfile_loop, "metrics-textfile")
        return str(self._textfile)

    def _textfile_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._write_textfile()

    def _write_textfile(self) -> None:
        assert self._textfile is not None
        try:
            self._textfile.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self._textfile), self._registry)
        except OSError as exc:
            log.error("cannot write metrics to %s: %s", self._textfile, exc)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            result: list[bytes] = self._metrics_app(environ, start_response)
            return result
        try:
            status, document = route()
        except Exception as exc:  # a broken status must not take the exporter down
            log.exception("metrics route %s failed", environ.get("PATH_INFO"))
            status, document = 500, {"error": f"{type(exc).__name__}: {exc}"}
        body = json.dumps(document, ensure_ascii=False).encode()
        start_response(
            f"{status} {_REASONS.get(status, 'Status')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def close(self) -> None:
        """Stop serving. A textfile is written a last time, with the registry as it is now:
        node_exporter keeps reading the file after we exit, so it must not say we are up."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(5)
        if self._writing:
            self._write_textfile()


def _ranges(ports: Iterable[int]) -> str:
    listed = list(ports)
    if not listed:
        return "none"
    return f"{listed[0]}-{listed[-1]}" if len(listed) > 1 else str(listed[0])
