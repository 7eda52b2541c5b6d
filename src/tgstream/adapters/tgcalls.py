"""Telegram output: joins CHAT_ID's video chat with py-tgcalls and pushes raw frames into it.

The engine's ``raw`` recipe hands over one I420 frame and 1/fps s of s16le PCM per unit.
ntgcalls takes video a frame at a time but audio only in 10 ms chunks, so the PCM is re-cut with
a carry-over buffer (6400 bytes at 30 fps is 3 1/3 chunks).

Telegram can drop us at any time: kicked, the video chat closed, or the connection gone without
any update at all (hence the membership poll). Each marks the output not-joined; one background
task rejoins with a backoff of 1, 2, 4 ... 30 s (a FloodWait waits what Telegram asks) and counts
``output_reconnected``. While not joined, units are dropped: the broadcast stays live.

The pyrogram and py-tgcalls imports live here only; ``bootstrap`` and ``cli`` import this module
lazily, when the Telegram output is actually used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from pyrogram.errors import ChatAdminRequired, FloodWait, Unauthorized
from pyrogram.errors.rpc_error import RPCError
from pytgcalls import PyTgCalls
from pytgcalls.exceptions import NoActiveGroupCall, NotInCallError
from pytgcalls.types import (
    ChatUpdate,
    Device,
    ExternalMedia,
    Frame,
    GroupCallConfig,
    MediaStream,
)
from pytgcalls.types.raw import AudioParameters, VideoParameters

from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe
from tgstream.adapters.telegram_session import (
    DEAD_SESSION_ERRORS,
    credentials,
    make_client,
    rpc_name,
    session_problem,
)
from tgstream.config import Quality, Settings
from tgstream.errors import ConfigError, OutputError, SessionError
from tgstream.ports import EngineEvents
from tgstream.session import SESSION_HINT

__all__ = ["TgCallsLike", "TelegramOutput", "build_telegram_output"]

log = logging.getLogger(__name__)

_BACKOFF_MAX: Final = 30.0
_LEAVE_TIMEOUT: Final = 5.0

Sleep = Callable[[float], Awaitable[None]]
UpdateHandler = Callable[[Any, Any], Awaitable[None]]


class TgCallsLike(Protocol):
    """The part of :class:`pytgcalls.PyTgCalls` this output uses (tests inject a fake)."""

    async def start(self) -> Any: ...

    async def resolve_chat_id(self, chat_id: int | str) -> int: ...

    async def play(self, chat_id: int | str, stream: Any = None, config: Any = None) -> Any: ...

    async def send_frame(
        self, chat_id: int | str, device: Any, data: bytes, frame_data: Any
    ) -> Any: ...

    async def leave_call(self, chat_id: int | str, close: bool = False) -> Any: ...

    @property
    def calls(self) -> Awaitable[Mapping[int, Any]]:
        """Active calls keyed by chat id (a property whose value is awaited)."""
        ...

    def on_update(self, filters: Any = None) -> Callable[[UpdateHandler], UpdateHandler]: ...


class TelegramOutput:
    """:class:`~tgstream.ports.Output` into a Telegram group video chat; see the module doc."""

    recipe: Recipe = "raw"
    name = "telegram"

    def __init__(
        self,
        calls: TgCallsLike,
        chat_id: int | str,
        quality: Quality,
        events: EngineEvents | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        poll_interval: float = 5.0,
        preflight: Callable[[], Awaitable[str | None]] | None = None,
        start_timeout: float = 60.0,
        join_timeout: float = 30.0,
        send_timeout: float = 5.0,
        on_session_dead: Callable[[str], None] | None = None,
    ) -> None:
        self._calls = calls
        self._on_session_dead = on_session_dead
        self.session_dead: str | None = None
        """Why Telegram refused the session mid-stream (a pyrogram error name), once it has."""
        self._chat_id = chat_id
        self._q = quality
        self._events = events
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._preflight = preflight
        self._start_timeout = start_timeout
        self._join_timeout = join_timeout
        self._send_timeout = send_timeout
        self._chunk = quality.sample_rate * quality.channels * 2 // 100  # 10 ms of s16le
        self._audio = bytearray()
        self._video_info = Frame.Info(width=quality.width, height=quality.height)
        self._audio_info = Frame.Info()
        self._chat: int | None = None
        """``chat_id`` resolved to the number py-tgcalls keys calls and updates by."""
        self._started = False
        self._joined = False
        self._ever_joined = False
        self._closing = False
        self._attempted = asyncio.Event()
        self._joiner: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def joined(self) -> bool:
        return self._joined

    async def open(self) -> None:
        """Start the client and try to join; a join that fails goes on in the background.

        Raises :class:`OutputError` only when the client itself cannot start (bad session,
        network down): py-tgcalls cannot ``start()`` twice, so the process exits with a clear
        message and its supervisor restarts it.
        """
        if self._preflight is not None and (problem := await self._preflight()):
            raise OutputError(problem)
        self._calls.on_update()(self._on_update)
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._calls.start()
        except (Unauthorized, *DEAD_SESSION_ERRORS) as exc:
            await self._stop_client()
            raise SessionError(
                rpc_name(exc), f"Telegram rejected SESSION_STRING ({rpc_name(exc)}); {SESSION_HINT}"
            ) from exc
        except TimeoutError as exc:
            await self._stop_client()
            raise OutputError(
                f"no answer from Telegram within {self._start_timeout:g}s; check the network "
                "and firewall (outbound TCP 443 to Telegram)"
            ) from exc
        except (OSError, RPCError) as exc:
            await self._stop_client()
            raise OutputError(
                f"cannot start the Telegram client ({exc}); check the network, API_ID and API_HASH"
            ) from exc
        self._started = True
        self._joiner = asyncio.create_task(self._join_loop(), name="telegram-join")
        self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
        # Wait for the first attempt so a healthy start broadcasts from the first unit; retries
        # (FloodWait, backoff) carry on in the background and never hold the engine up.
        attempted = asyncio.create_task(self._attempted.wait())
        try:
            await asyncio.wait({self._joiner, attempted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            attempted.cancel()
        if not self._joined:
            log.warning(
                "telegram: not in the video chat of CHAT_ID=%s yet; units are dropped until joined",
                self._chat_id,
            )

    async def write(self, unit: Unit) -> None:
        chat = self._chat
        if not self._joined or chat is None:
            return
        try:
            async with asyncio.timeout(self._send_timeout):
                if unit.data and self._q.has_video:
                    await self._calls.send_frame(chat, Device.CAMERA, unit.data, self._video_info)
                self._audio += unit.audio
                whole = len(self._audio) - len(self._audio) % self._chunk
                for start in range(0, whole, self._chunk):
                    chunk = bytes(self._audio[start : start + self._chunk])
                    await self._calls.send_frame(chat, Device.MICROPHONE, chunk, self._audio_info)
                del self._audio[:whole]
        except NotInCallError:
            self._lose("not in the call any more")
        except (Unauthorized, *DEAD_SESSION_ERRORS) as exc:
            self._session_died(exc)
        except TimeoutError:
            self._lose(f"sending a frame took longer than {self._send_timeout:g}s")
        except Exception as exc:
            self._lose(f"sending a frame failed: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        self._closing = True
        self._joined = False
        tasks = [t for t in (self._poller, self._joiner) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._started and self._chat is not None:
            try:
                async with asyncio.timeout(_LEAVE_TIMEOUT):
                    await self._calls.leave_call(self._chat)
            except (NotInCallError, NoActiveGroupCall):
                pass  # already out, or the video chat is gone: nothing to leave
            except Exception as exc:
                log.warning("telegram: leaving the video chat failed: %s", exc)
            else:
                log.info("telegram: left the video chat of CHAT_ID=%s", self._chat_id)
        if self._started:
            await self._stop_client()

    # -- joining -----------------------------------------------------------------------------

    def _media_stream(self) -> Any:
        audio = AudioParameters(self._q.sample_rate, self._q.channels)
        if not self._q.has_video:
            return MediaStream(
                ExternalMedia.AUDIO,
                audio_parameters=audio,
                video_flags=MediaStream.Flags.IGNORE,
            )
        return MediaStream(
            ExternalMedia.VIDEO,
            audio_parameters=audio,
            video_parameters=VideoParameters(self._q.width, self._q.height, self._q.fps),
            audio_path=ExternalMedia.AUDIO,
        )

    async def _join_once(self) -> None:
        async with asyncio.timeout(self._join_timeout):
            if self._chat is None:
                self._chat = await self._calls.resolve_chat_id(self._chat_id)
            await self._calls.play(
                self._chat, self._media_stream(), GroupCallConfig(auto_start=True)
            )

    async def _join_loop(self) -> None:
        backoff = 1.0
        while not self._closing:
            failure: Exception | None = None
            try:
                await self._join_once()
            except Exception as exc:
                failure = exc
            self._attempted.set()
            if failure is None:
                break
            if isinstance(failure, (Unauthorized, *DEAD_SESSION_ERRORS)):
                self._session_died(failure)
                return
            if isinstance(failure, FloodWait):
                seconds = failure.value if isinstance(failure.value, int) else 5
                log.warning(
                    "telegram: FloodWait joining CHAT_ID=%s: Telegram asks to wait %ss",
                    self._chat_id,
                    seconds,
                )
                await self._sleep(seconds)
                continue
            self._log_join_failure(failure, backoff)
            if isinstance(failure, TimeoutError):
                # A cut-short play() can leave ntgcalls holding a half-made call; the next
                # play() would then only swap sources instead of connecting.
                await self._leave_quietly()
            await self._sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
        else:
            return  # closing
        self._joined = True
        if self._ever_joined:
            log.info("telegram: rejoined the video chat of CHAT_ID=%s", self._chat_id)
            if self._events is not None:
                self._events.output_reconnected()
        else:
            log.info(
                "telegram: joined the video chat of CHAT_ID=%s (%s)", self._chat_id, self._q.name
            )
        self._ever_joined = True

    def _log_join_failure(self, exc: Exception, backoff: float) -> None:
        if isinstance(exc, (NoActiveGroupCall, ChatAdminRequired)):
            log.error(
                "telegram: CHAT_ID=%s has no active video chat and this account may not start "
                "one (%s); allow it to start video chats in CHAT_ID (admin with the 'Manage "
                "video chats' right) or start one by hand; retrying in %gs",
                self._chat_id,
                rpc_name(exc),
                backoff,
            )
        elif isinstance(exc, RPCError):
            log.error(
                "telegram: joining the video chat of CHAT_ID=%s refused (%s); check CHAT_ID and "
                "that the account is a member; retrying in %gs",
                self._chat_id,
                rpc_name(exc),
                backoff,
            )
        elif isinstance(exc, TimeoutError):
            log.warning(
                "telegram: joining CHAT_ID=%s took longer than %gs; retrying in %gs",
                self._chat_id,
                self._join_timeout,
                backoff,
            )
        else:
            log.warning(
                "telegram: joining CHAT_ID=%s failed (%s: %s); retrying in %gs",
                self._chat_id,
                type(exc).__name__,
                exc,
                backoff,
            )

    def _session_died(self, exc: BaseException) -> None:
        """Telegram refused the session: no rejoin can help; the supervisor takes over."""
        if self.session_dead is not None:
            return
        self.session_dead = rpc_name(exc)
        self._joined = False
        log.warning(
            "telegram: Telegram rejected the session mid-stream (%s); pausing the output",
            self.session_dead,
        )
        if self._on_session_dead is not None:
            self._on_session_dead(self.session_dead)

    def _lose(self, why: str, *, quiet: bool = False) -> None:
        """Mark not-joined and rejoin in the background; a no-op while already rejoining."""
        if self._closing or not self._joined:
            return
        self._joined = False
        self._audio.clear()  # the tail of a unit from before the gap would only click
        if not quiet:
            log.warning(
                "telegram: out of the video chat of CHAT_ID=%s (%s); rejoining", self._chat_id, why
            )
        if self._joiner is None or self._joiner.done():
            self._joiner = asyncio.create_task(self._join_loop(), name="telegram-rejoin")

    async def _on_update(self, _client: Any, update: Any) -> None:
        if not isinstance(update, ChatUpdate) or self._chat is None:
            return
        if update.chat_id != self._chat or not update.status & ChatUpdate.Status.LEFT_CALL:
            return
        log.warning(
            "telegram: %s in CHAT_ID=%s%s",
            update.status.name,
            self._chat_id,
            "; rejoining" if self._joined and not self._closing else "",
        )
        self._lose(str(update.status.name), quiet=True)

    async def _poll(self) -> None:
        # Telegram may drop the call without sending any update; ntgcalls then simply no longer
        # lists it, and only asking tells.
        while True:
            await asyncio.sleep(self._poll_interval)
            if not self._joined or self._chat is None:
                continue
            try:
                async with asyncio.timeout(self._send_timeout):
                    active = await self._calls.calls
            except Exception as exc:
                log.debug("telegram: membership check failed: %r", exc)
                continue
            if self._joined and self._chat not in active:
                self._lose("no longer listed among active calls")

    async def _leave_quietly(self) -> None:
        if self._chat is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LEAVE_TIMEOUT):
                await self._calls.leave_call(self._chat)

    async def _stop_client(self) -> None:
        # PyTgCalls has no stop(); its pyrogram client does, and leaving it running keeps a
        # session (and its network tasks) alive after close.
        app = getattr(self._calls, "mtproto_client", None)
        stop = getattr(app, "stop", None)
        if not callable(stop) or not getattr(app, "is_connected", False):
            return
        try:
            async with asyncio.timeout(10.0):
                await stop()
        except Exception as exc:
            log.debug("telegram: stopping the client failed: %r", exc)


def build_telegram_output(
    settings: Settings,
    events: EngineEvents | None,
    on_session_dead: Callable[[str], None] | None = None,
) -> TelegramOutput:
    """The real output: a pyrogram client (session in memory) wrapped by py-tgcalls."""
    if settings.CHAT_ID is None:
        raise ConfigError("the Telegram output needs CHAT_ID (the group's id, e.g. -100123...)")
    session = credentials(settings)[2]
    calls = PyTgCalls(make_client(settings, updates=True))

    async def preflight() -> str | None:
        problem = await session_problem(session)
        return f"{problem}; {SESSION_HINT}" if problem else None

    return TelegramOutput(
        calls,
        settings.CHAT_ID,
        settings.quality,
        events,
        preflight=preflight,
        on_session_dead=on_session_dead,
    )
