"""A fake Telegram data centre on loopback, for session errors as kurigram really meets them.

It speaks MTProto's abridged TCP transport (kurigram's default): the ``0xef`` tag, then packets
of a length byte (or ``0x7f`` and three bytes) in 4-byte words. It never decrypts anything: it
answers every packet as Telegram answers a key it no longer knows, with the 4-byte transport
error -404, or stays ``silent`` (an unreachable DC). ``client(settings)`` builds the real
kurigram :class:`pyrogram.Client` the way ``make_client`` does, with a connection that dials
this server instead of the DC's address; pass it as ``client_factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any, Literal

from pyrogram import Client
from pyrogram.connection import Connection

from tgstream.adapters.telegram_session import CLIENT_NAME, credentials

Answer = Literal["auth_key_not_found", "silent"]


class FakeDC:
    def __init__(self, answer: Answer = "auth_key_not_found") -> None:
        self.answer = answer
        self.port = 0
        self.packets = 0
        """Packets received from clients (each an encrypted MTProto message)."""
        self.errors_sent = 0
        self._server: asyncio.Server | None = None
        self._peers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeDC:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._peers):
            writer.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._peers.add(writer)
        try:
            if await reader.readexactly(1) != b"\xef":
                return  # not the abridged transport
            while True:
                size = await reader.readexactly(1)
                if size == b"\x7f":
                    size = await reader.readexactly(3)
                await reader.readexactly(int.from_bytes(size, "little") * 4)
                self.packets += 1
                if self.answer == "auth_key_not_found":
                    # One word long: the int32 error code, as Telegram sends it.
                    writer.write(b"\x01" + struct.pack("<i", -404))
                    await writer.drain()
                    self.errors_sent += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._peers.discard(writer)
            writer.close()

    def client(self, settings: Any) -> Client:
        """The real kurigram client on the settings' session, dialling this fake DC."""
        port = self.port

        class Loopback(Connection):
            def __init__(self, **kw: Any) -> None:  # kurigram passes keywords only
                super().__init__(**{**kw, "server_address": "127.0.0.1", "port": port})

        api_id, api_hash, session = credentials(settings)
        return Client(
            CLIENT_NAME,
            api_id=api_id,
            api_hash=api_hash,
            session_string=session,
            in_memory=True,
            no_updates=True,
            connection_factory=Loopback,
        )
