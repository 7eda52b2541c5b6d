"""A lean HTTP/1.1 load client for the benchmarks: keep-alive connections on asyncio
protocols, requests pre-encoded as bytes, answers parsed only as far as the status line and
``Content-Length``.

httpx costs the load generator more CPU per request than a small server spends answering it;
on a 2-core machine that CPU is taken from the server under test. This client does the least a
correct HTTP/1.1 client must do for ``POST`` with a JSON body and a ``Content-Length`` answer
(no chunked answers, no pipelining: one request in flight per connection).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

__all__ = ["Pool", "HttpError", "post_head"]

_END: Final = b"\r\n\r\n"


class HttpError(Exception):
    pass


def post_head(host: str, path: str, headers: dict[str, str]) -> bytes:
    """The head of a keep-alive ``POST`` with a JSON body, up to its ``Content-Length`` value:
    a request is ``head + b"%d\\r\\n\\r\\n" % len(body) + body``."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\nContent-Length: ").encode()


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1  # bytes of the whole answer once its head is parsed
        self.status = 0
        self.body_at = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if self.need < 0:
            end = buf.find(_END)
            if end < 0:
                return
            head = bytes(buf[:end])
            # "HTTP/1.1 202 Accepted"
            self.status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            self.body_at = end + 4
            self.need = self.body_at + length
        if len(buf) >= self.need:
            body = bytes(buf[self.body_at : self.need])
            del buf[: self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, body))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        assert self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


class Pool:
    """Keep-alive connections to one server, up to ``limit``; a request takes an idle one or
    opens a new one, and waits for one to come back when all ``limit`` are busy."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self._idle: deque[_Conn] = deque()
        self._opened = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def _take(self) -> _Conn:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._opened -= 1
            if self._opened < self.limit:
                self._opened += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Conn, self.host, self.port
                    )
                except BaseException:
                    self._opened -= 1
                    raise
                return conn
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter

    def _give(self, conn: _Conn) -> None:
        if conn.closed:
            self._opened -= 1
        else:
            self._idle.append(conn)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of a ``POST`` whose head came from :func:`post_head`."""
        return await self.send(b"%s%d\r\n\r\n%s" % (head, len(body), body))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of one request given as its full bytes."""
        conn = await self._take()
        try:
            return await conn.request(raw)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            conn.closed = True
            raise
        finally:
            self._give(conn)

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
