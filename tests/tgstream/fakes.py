"""Fakes at library boundaries, shared by unit and integration tests.

``FakeTgCalls`` stands where ``pytgcalls.PyTgCalls`` stands. It checks what py-tgcalls itself
checks (``@statictypes``: ``bytes``, ``Device``, ``Frame.Info``, a ``MediaStream``), raises the
library's own exceptions, and emits real ``ChatUpdate`` objects the way py-tgcalls does: after it
has already dropped the call.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Callable
from typing import Any

from pyrogram.errors import AuthKeyUnregistered
from pyrogram.storage import Storage
from pytgcalls.exceptions import NotInCallError
from pytgcalls.types import (
    ChatUpdate,
    Device,
    Frame,
    GroupCallConfig,
    GroupCallParticipant,
    MediaStream,
    UpdatedGroupCallParticipant,
)

from tgstream.engine import NullEvents

CHAT = -100123
ME = 42


class Me:
    first_name = "Alice"
    id = ME


class FakeApp:
    """The pyrogram client behind PyTgCalls (``mtproto_client``): ``stop``, and ``me`` (set by
    pyrogram's ``start``), which tells our own participant updates from others'."""

    def __init__(self) -> None:
        self.is_connected = True
        self.stopped = 0
        self.me = Me()

    async def stop(self) -> None:
        self.stopped += 1
        self.is_connected = False


class FakeTgCalls:
    def __init__(self) -> None:
        self.mtproto_client = FakeApp()
        self.started = 0
        self.active: dict[int, MediaStream] = {}
        self.plays: list[tuple[int, MediaStream, GroupCallConfig]] = []
        self.play_errors: list[Exception] = []
        """Raised by the next ``play`` calls, one each, before the call would be joined."""
        self.start_error: Exception | None = None
        """Raised by every ``start`` while set."""
        self.start_errors: list[Exception] = []
        """Raised by the next ``start`` calls, one each."""
        self.send_error: Exception | None = None
        """Raised by every ``send_frame`` while set (e.g. the session revoked mid-stream)."""
        self.frames: list[tuple[Device, bytes, Frame.Info]] = []
        self.left: list[int] = []
        self.handlers: list[Callable[[Any, Any], Any]] = []

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        if self.start_errors:
            raise self.start_errors.pop(0)
        self.started += 1

    async def resolve_chat_id(self, chat_id: int | str) -> int:
        return int(chat_id)

    async def play(self, chat_id: int | str, stream: Any = None, config: Any = None) -> None:
        assert self.started, "play() before start()"
        assert isinstance(chat_id, int)
        assert isinstance(stream, MediaStream)
        assert isinstance(config, GroupCallConfig)
        self.plays.append((chat_id, stream, config))
        if self.play_errors:
            raise self.play_errors.pop(0)
        self.active[chat_id] = stream

    async def send_frame(
        self, chat_id: int | str, device: Any, data: Any, frame_data: Any = None
    ) -> None:
        # What py-tgcalls' @statictypes would refuse: bytearray or memoryview, a raw device.
        assert type(data) is bytes, type(data)
        assert isinstance(device, Device)
        assert isinstance(frame_data, Frame.Info)
        if self.send_error is not None:
            raise self.send_error
        if chat_id not in self.active:
            raise NotInCallError()  # what ntgcalls' ConnectionNotFound becomes
        self.frames.append((device, data, frame_data))

    async def leave_call(self, chat_id: int | str, close: bool = False) -> None:
        if self.active.pop(int(chat_id), None) is None:
            raise NotInCallError()
        self.left.append(int(chat_id))

    @property
    async def calls(self) -> dict[int, object]:
        return dict(self.active)

    def on_update(self, filters: Any = None) -> Callable[[Any], Any]:
        def register(func: Any) -> Any:
            self.handlers.append(func)
            return func

        return register

    # -- what Telegram does to us ----------------------------------------------------------

    def drop(self, chat_id: int = CHAT) -> None:
        """The connection goes away without any update."""
        self.active.pop(chat_id, None)

    async def emit(self, update: Any) -> None:
        for handler in self.handlers:
            await handler(self, update)

    async def kick(self, chat_id: int = CHAT) -> None:
        # py-tgcalls clears the call first (_clear_call), then propagates the update.
        self.active.pop(chat_id, None)
        await self.emit(ChatUpdate(chat_id, ChatUpdate.Status.KICKED))

    async def end_call(self, chat_id: int = CHAT) -> None:
        """An admin ends the video chat (py-tgcalls: GroupCallDiscarded -> CLOSED_VOICE_CHAT)."""
        self.active.pop(chat_id, None)
        await self.emit(ChatUpdate(chat_id, ChatUpdate.Status.CLOSED_VOICE_CHAT))

    async def participant(
        self,
        action: GroupCallParticipant.Action,
        *,
        user_id: int = ME,
        muted_by_admin: bool = False,
        chat_id: int = CHAT,
    ) -> None:
        """A participant update, as py-tgcalls propagates it (after its own handling: for our
        own LEFT or KICKED it has already cleared the call)."""
        if user_id == ME and action in (
            GroupCallParticipant.Action.LEFT,
            GroupCallParticipant.Action.KICKED,
        ):
            self.active.pop(chat_id, None)
        who = GroupCallParticipant(
            user_id, muted_by_admin, muted_by_admin, True, False, True, False, 100, 1, None, None
        )
        await self.emit(UpdatedGroupCallParticipant(chat_id, action, who))

    def sent(self, device: Device) -> list[tuple[Device, bytes, Frame.Info]]:
        return [f for f in self.frames if f[0] == device]


class RecordingEvents(NullEvents):
    def __init__(self) -> None:
        self.reconnects = 0

    def output_reconnected(self) -> None:
        self.reconnects += 1


class FakeSleep:
    """Records the waits asked for (FloodWait, backoff) and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


# -- the pyrogram client, for session checks and logins ---------------------------------------


def session_string(user_id: int = 42, dc_id: int = 2, key: bytes = bytes(256)) -> str:
    """A well-formed session string, as ``export_session_string`` makes (never authorised)."""
    packed = struct.pack(Storage.SESSION_STRING_FORMAT, dc_id, 1, False, key, user_id, False)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


class Chat:
    title = "Broadcast group"


class FakeTelegram:
    """Telegram's view of sessions: which work, which are refused and how, which time out.

    ``client(settings)`` builds a fake pyrogram client bound to the settings' session, the way
    ``make_client`` builds the real one; pass it as ``client_factory``.
    """

    def __init__(self) -> None:
        self.refused: dict[str, Exception] = {}
        self.hanging: set[str] = set()
        self.logins = 0
        self.chat_error: Exception | None = None
        """What looking up a chat raises (``None``: the chat is found)."""
        self.chat_lookups = 0

    def revoke(self, session: str, error: Exception | None = None) -> None:
        self.refused[session] = error or AuthKeyUnregistered()

    def client(self, settings: Any) -> FakeSessionClient:
        return FakeSessionClient(self, settings.SESSION_STRING.get_secret_value())


class FakeSessionClient:
    def __init__(self, telegram: FakeTelegram, session: str) -> None:
        self._telegram = telegram
        self._session = session
        self.is_connected = False

    async def connect(self) -> bool:
        if self._session in self._telegram.hanging:
            await asyncio.sleep(3600)
        self.is_connected = True
        return True

    async def get_me(self) -> Me:
        self._telegram.logins += 1
        error = self._telegram.refused.get(self._session)
        if error is not None:
            raise error
        return Me()

    async def get_chat(self, chat_id: int | str) -> Chat:
        self._telegram.chat_lookups += 1
        if self._telegram.chat_error is not None:
            raise self._telegram.chat_error
        return Chat()

    async def disconnect(self) -> None:
        self.is_connected = False
