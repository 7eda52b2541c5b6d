"""Telegram output: joins CHAT_ID's video chat with py-tgcalls and pushes raw frames into it.

The engine's ``raw`` recipe hands over one I420 frame and 1/fps s of s16le PCM per unit.
ntgcalls takes video a frame at a time but audio only in 10 ms chunks, so the PCM is re-cut with
a carry-over buffer (6400 bytes at 30 fps is 3 1/3 chunks).

Telegram can drop us at any time: kicked or banned from the group, removed from the video chat
by an admin, the video chat ended, or the connection gone without any update at all (hence the
membership poll). Each marks the output out of the call with a reason (see
:mod:`tgstream.callstate`) and reports it through :class:`~tgstream.callstate.CallEvents`; one
background task rejoins with a backoff of 1, 2, 4 ... 30 s (a FloodWait, at start or later,
waits what Telegram asks) and counts ``output_reconnected``. While out, units are dropped (the
broadcast clock keeps running) and the state says so. Muted by an admin, frames go on (the
picture still reaches viewers) and the state is ``muted``.

After ``rebuild_after`` refusals in a row the py-tgcalls client and its pyrogram client are
thrown away and made anew (py-tgcalls issue #298: ``GROUPCALL_FORBIDDEN`` on a rejoin clears only
with a new client). An admin ending the video chat: ``ON_CALL_ENDED=recreate`` starts a new one
at once; ``wait`` (the default) waits until someone starts one. The first join of a start always
creates a video chat when none runs.

Teardown. py-tgcalls has no ``stop()``: its NTgCalls (two native threads, more per call made)
holds the callbacks ``start()`` registered, which hold the PyTgCalls, which holds the NTgCalls; a
cycle through native code that Python's collector cannot see. :func:`release_client` stops the
native calls, replaces each NTgCalls callback with a no-op (breaking the cycle, so both objects
and the threads go once unreferenced) and shuts the handler thread pool down.

py-tgcalls' start asks GitHub twice for its latest version (up to 5 s each, and an outbound
request a hardened host should not make); :func:`quiet_version_check` turns it off through the
flag py-tgcalls itself uses to run the check once per process.

The pyrogram and py-tgcalls imports live here only; ``bootstrap`` and ``cli`` import this module
lazily, when the Telegram output is actually used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

import ntgcalls
from pyrogram.errors import (
    ChannelInvalid,
    ChannelPrivate,
    ChatAdminRequired,
    ChatForbidden,
    FloodWait,
    GroupcallForbidden,
    GroupcallInvalid,
    PeerIdInvalid,
    Unauthorized,
    UserBannedInChannel,
)
from pyrogram.errors.rpc_error import RPCError
from pytgcalls import PyTgCalls
from pytgcalls import __version__ as pytgcalls_version
from pytgcalls.exceptions import NoActiveGroupCall, NotInCallError
from pytgcalls.pytgcalls_session import PyTgCallsSession
from pytgcalls.types import (
    ChatUpdate,
    Device,
    ExternalMedia,
    Frame,
    GroupCallConfig,
    GroupCallParticipant,
    MediaStream,
    UpdatedGroupCallParticipant,
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
from tgstream.callstate import CallEvents, CallState, NullCallEvents
from tgstream.config import OnCallEnded, Quality, Settings
from tgstream.errors import ConfigError, OutputError, SessionError
from tgstream.ports import EngineEvents
from tgstream.session import SESSION_HINT

__all__ = [
    "TgCallsLike",
    "TelegramOutput",
    "build_telegram_output",
    "quiet_version_check",
    "release_client",
]

log = logging.getLogger(__name__)

_BACKOFF_MAX: Final = 30.0
_LEAVE_TIMEOUT: Final = 5.0
_STOP_TIMEOUT: Final = 10.0
REBUILD_AFTER: Final = 3
"""Join refusals in a row after which the clients are rebuilt."""
_NO_ACCESS: Final = (
    ChannelPrivate,
    ChannelInvalid,
    ChatForbidden,
    PeerIdInvalid,
    UserBannedInChannel,
)
_FORBIDDEN: Final = (GroupcallForbidden, GroupcallInvalid)

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
    reports_flowing = False
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
        new_client: Callable[[], TgCallsLike] | None = None,
        call_events: CallEvents | None = None,
        on_call_ended: OnCallEnded = "wait",
        rebuild_after: int = REBUILD_AFTER,
    ) -> None:
        """``new_client`` makes a fresh py-tgcalls client (with its own pyrogram client) when
        Telegram keeps refusing joins; without it the output never rebuilds."""
        self._calls = calls
        self._new_client = new_client
        self._call_events: CallEvents = call_events or NullCallEvents()
        self._on_call_ended = on_call_ended
        self._rebuild_after = rebuild_after
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
        """``start()`` was called on the current client: it needs a teardown."""
        self._running = False
        """``start()`` succeeded on the current client. py-tgcalls marks itself running before
        its start can fail, so a client whose start failed is replaced, never started again."""
        self._joined = False
        self._ever_joined = False
        self._closing = False
        self._auto_start = True
        """Whether a join may start a video chat: yes at start; not after an admin ended it
        while ``ON_CALL_ENDED=wait``, until someone starts a new one."""
        self._flood_wait = 0.0
        """A FloodWait from the client's start, waited out by the join loop."""
        self.state: CallState = "none"
        self.reason = ""
        self.rebuilds = 0
        """How many times the clients were thrown away and made anew."""
        self._attempted = asyncio.Event()
        self._joiner: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def joined(self) -> bool:
        return self._joined

    async def open(self) -> None:
        """Start the client and try to join; a join that fails goes on in the background.

        Raises :class:`SessionError` when Telegram refuses the session and
        :class:`OutputError` when the client cannot start at all (network down); a FloodWait
        at start is waited out in the background like a refused join.
        """
        if self._preflight is not None and (problem := await self._preflight()):
            raise OutputError(problem)
        log.info(
            "telegram: py-tgcalls %s, ntgcalls %s (update check off)",
            pytgcalls_version,
            ntgcalls.__version__,
        )
        self._set_state("joining")
        try:
            await self._start_client()
        except FloodWait as exc:
            self._flood_wait = _flood_seconds(exc)
            self._set_state("out", "flood_wait", f"FloodWait {self._flood_wait:g}s at start")
        except (Unauthorized, *DEAD_SESSION_ERRORS) as exc:
            await self._teardown()
            raise SessionError(
                rpc_name(exc), f"Telegram rejected SESSION_STRING ({rpc_name(exc)}); {SESSION_HINT}"
            ) from exc
        except TimeoutError as exc:
            await self._teardown()
            raise OutputError(
                f"no answer from Telegram within {self._start_timeout:g}s; check the network "
                "and firewall (outbound TCP 443 to Telegram)"
            ) from exc
        except (OSError, RPCError) as exc:
            await self._teardown()
            raise OutputError(
                f"cannot start the Telegram client ({exc}); check the network, API_ID and API_HASH"
            ) from exc
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
                "telegram: not in the video chat of CHAT_ID=%s yet (%s); units are dropped "
                "until joined",
                self._chat_id,
                self.reason or self.state,
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
        if self._running and self._chat is not None:
            try:
                async with asyncio.timeout(_LEAVE_TIMEOUT):
                    await self._calls.leave_call(self._chat)
            except (NotInCallError, NoActiveGroupCall):
                pass  # already out, or the video chat is gone: nothing to leave
            except Exception as exc:
                log.warning("telegram: leaving the video chat failed: %s", str(exc))
            else:
                log.info("telegram: left the video chat of CHAT_ID=%s", self._chat_id)
        await self._teardown()
        self._set_state("none")

    # -- state -------------------------------------------------------------------------------

    def _set_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        self._call_events.call_state(state, reason, detail)

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

    async def _start_client(self) -> None:
        """Start the current client, replacing it first if an earlier start of it failed."""
        if self._started and self._new_client is not None:
            await self._replace_client()
        calls = self._calls
        if not self._started:
            calls.on_update()(self._on_update)
        self._started = True  # from here on the client may hold a connection to stop
        async with asyncio.timeout(self._start_timeout):
            await calls.start()
        self._running = True

    async def _join_once(self) -> None:
        async with asyncio.timeout(self._join_timeout):
            if self._chat is None:
                self._chat = await self._calls.resolve_chat_id(self._chat_id)
            await self._calls.play(
                self._chat, self._media_stream(), GroupCallConfig(auto_start=self._auto_start)
            )

    async def _join_loop(self) -> None:
        backoff = 1.0
        refusals = 0
        while not self._closing:
            failure: Exception | None = None
            try:
                if self._flood_wait:
                    seconds, self._flood_wait = self._flood_wait, 0.0
                    log.warning(
                        "telegram: FloodWait starting the client: Telegram asks to wait %gs",
                        seconds,
                    )
                    await self._sleep(seconds)
                if not self._running:
                    await self._start_client()
                await self._join_once()
            except Exception as exc:
                failure = exc
            self._attempted.set()
            if failure is None:
                break
            if isinstance(failure, (Unauthorized, *DEAD_SESSION_ERRORS)):
                self._session_died(failure)
                return
            reason, detail = self._classify(failure)
            self._set_state("out", reason, detail)
            if isinstance(failure, FloodWait):
                seconds = _flood_seconds(failure)
                log.warning(
                    "telegram: FloodWait joining CHAT_ID=%s: Telegram asks to wait %gs",
                    self._chat_id,
                    seconds,
                )
                await self._sleep(seconds)
                continue
            if reason == "call_ended":
                # ON_CALL_ENDED=wait: nobody has started a new video chat yet; not a refusal.
                log.info(
                    "telegram: still no video chat in CHAT_ID=%s (ON_CALL_ENDED=wait); "
                    "checking again in %gs",
                    self._chat_id,
                    backoff,
                )
            else:
                self._log_join_failure(failure, backoff)
                refusals += 1
            if isinstance(failure, TimeoutError):
                # A cut-short play() can leave ntgcalls holding a half-made call; the next
                # play() would then only swap sources instead of connecting.
                await self._leave_quietly()
            if refusals >= self._rebuild_after and self._new_client is not None:
                refusals = 0
                await self._rebuild()
            await self._sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
        else:
            return  # closing
        self._joined = True
        self._auto_start = True
        self._set_state("in_call")
        if self._ever_joined:
            log.info("telegram: rejoined the video chat of CHAT_ID=%s", self._chat_id)
            if self._events is not None:
                self._events.output_reconnected()
        else:
            log.info(
                "telegram: joined the video chat of CHAT_ID=%s (%s)", self._chat_id, self._q.name
            )
        self._ever_joined = True

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """A failed join as ``(reason, detail)``; the reason is one of ``CALL_REASONS``."""
        name = rpc_name(exc)
        if isinstance(exc, FloodWait):
            return "flood_wait", f"FloodWait {_flood_seconds(exc):g}s"
        if isinstance(exc, NoActiveGroupCall) and not self._auto_start:
            return "call_ended", "no video chat running (ON_CALL_ENDED=wait)"
        if isinstance(exc, (NoActiveGroupCall, ChatAdminRequired)):
            return "no_rights", name
        if isinstance(exc, _NO_ACCESS):
            return "no_access", name
        if isinstance(exc, _FORBIDDEN):
            return "forbidden", name
        if isinstance(exc, ntgcalls.TransportParseException):
            # py-tgcalls swallows GROUPCALL_FORBIDDEN on JoinGroupCall and hands ntgcalls an
            # empty transport, which it refuses: the refusal as it reaches us.
            return "forbidden", f"no transport from Telegram ({exc})"
        if isinstance(exc, RPCError):
            return "refused", name
        if isinstance(exc, TimeoutError):
            return "timeout", f"no answer within {self._join_timeout:g}s"
        return "error", f"{type(exc).__name__}: {exc}"

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
                str(exc),  # never the exception: a kept record would pin its client
                backoff,
            )

    async def _rebuild(self) -> None:
        """Throw the clients away and make new ones; the next join starts the new client."""
        assert self._new_client is not None
        log.warning(
            "telegram: joining CHAT_ID=%s failed %d times in a row; rebuilding the py-tgcalls "
            "and MTProto clients",
            self._chat_id,
            self._rebuild_after,
        )
        await self._leave_quietly()
        await self._replace_client()

    async def _replace_client(self) -> None:
        assert self._new_client is not None
        await self._teardown()
        self._calls = self._new_client()
        self.rebuilds += 1
        self._call_events.client_rebuilt()

    def _session_died(self, exc: BaseException) -> None:
        """Telegram refused the session: no rejoin can help; the supervisor takes over."""
        if self.session_dead is not None:
            return
        self.session_dead = rpc_name(exc)
        self._joined = False
        self._set_state("out", "session", self.session_dead)
        log.warning(
            "telegram: Telegram rejected the session mid-stream (%s); pausing the output",
            self.session_dead,
        )
        if self._on_session_dead is not None:
            self._on_session_dead(self.session_dead)

    def _lose(self, why: str, *, quiet: bool = False, reason: str = "dropped") -> None:
        """Mark out of the call and rejoin in the background; a no-op while already out."""
        if self._closing or not self._joined:
            return
        self._joined = False
        self._audio.clear()  # the tail of a unit from before the gap would only click
        self._set_state("out", reason, why)
        if not quiet:
            log.warning(
                "telegram: out of the video chat of CHAT_ID=%s (%s); rejoining", self._chat_id, why
            )
        if self._joiner is None or self._joiner.done():
            self._joiner = asyncio.create_task(self._join_loop(), name="telegram-rejoin")

    async def _on_update(self, client: Any, update: Any) -> None:
        # A client we already replaced may still deliver an update: only the current one counts.
        if client is not self._calls or self._chat is None or update.chat_id != self._chat:
            return
        if isinstance(update, ChatUpdate):
            self._on_chat_update(update)
        elif isinstance(update, UpdatedGroupCallParticipant):
            self._on_participant(client, update)

    def _on_chat_update(self, update: ChatUpdate) -> None:
        status = update.status
        if not status & ChatUpdate.Status.LEFT_CALL:
            return
        rejoining = "; rejoining" if self._joined and not self._closing else ""
        if status & ChatUpdate.Status.CLOSED_VOICE_CHAT:
            reason = "call_ended"
            if self._on_call_ended == "wait":
                self._auto_start = False
                rejoining = "; waiting for someone to start one (ON_CALL_ENDED=wait)"
            else:
                rejoining = "; starting a new one (ON_CALL_ENDED=recreate)"
            log.warning(
                "telegram: the video chat of CHAT_ID=%s was ended%s", self._chat_id, rejoining
            )
        else:
            reason = "kicked" if status & ChatUpdate.Status.KICKED else "left_group"
            if not status & (ChatUpdate.Status.KICKED | ChatUpdate.Status.LEFT_GROUP):
                reason = "dropped"
            log.warning("telegram: %s in CHAT_ID=%s%s", status.name, self._chat_id, rejoining)
        self._lose(str(status.name), quiet=True, reason=reason)

    def _on_participant(self, client: Any, update: UpdatedGroupCallParticipant) -> None:
        me = getattr(getattr(client, "mtproto_client", None), "me", None)
        participant = update.participant
        if me is None or participant.user_id != getattr(me, "id", None):
            return
        action = update.action
        if action in (GroupCallParticipant.Action.LEFT, GroupCallParticipant.Action.KICKED):
            # py-tgcalls has already dropped the call (_clear_call) when it tells us.
            log.warning(
                "telegram: removed from the video chat of CHAT_ID=%s%s",
                self._chat_id,
                "; rejoining" if self._joined and not self._closing else "",
            )
            self._lose("removed from the video chat", quiet=True, reason="removed")
        elif participant.muted_by_admin and self._joined and self.state != "muted":
            log.warning(
                "telegram: muted by an admin in the video chat of CHAT_ID=%s: viewers get no "
                "sound until it is allowed to speak",
                self._chat_id,
            )
            self._set_state("muted", "muted", "muted by an admin")
        elif not participant.muted_by_admin and self.state == "muted":
            log.info("telegram: allowed to speak again in CHAT_ID=%s", self._chat_id)
            self._set_state("in_call")

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
                log.debug("telegram: membership check failed: %s", repr(exc))
                continue
            if self._joined and self._chat not in active:
                self._lose("no longer listed among active calls")

    async def _leave_quietly(self) -> None:
        if self._chat is None or not self._running:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LEAVE_TIMEOUT):
                await self._calls.leave_call(self._chat)

    async def _teardown(self) -> None:
        """Stop the current client's MTProto client and release its native side."""
        calls = self._calls
        self._started = self._running = False
        # PyTgCalls has no stop(); its pyrogram client does, and leaving it running keeps a
        # session (and its network tasks) alive after close.
        app = getattr(calls, "mtproto_client", None)
        stop = getattr(app, "stop", None)
        if callable(stop) and getattr(app, "is_connected", False):
            try:
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await stop()
            except Exception as exc:
                log.debug("telegram: stopping the client failed: %s", repr(exc))
        await release_client(calls)


def _flood_seconds(exc: FloodWait) -> float:
    return float(exc.value) if isinstance(exc.value, int) else 5.0


def _ignore(*_args: Any) -> None:
    pass


async def release_client(calls: Any) -> None:
    """Free what a py-tgcalls client holds outside Python's reach (see the module doc).

    Safe on a client never started and on a fake: what it lacks is skipped.
    """
    binding = getattr(calls, "_binding", None)  # the NTgCalls; py-tgcalls offers no accessor
    if isinstance(binding, ntgcalls.NTgCalls):
        with contextlib.suppress(Exception):
            for chat in list(await binding.calls()):
                with contextlib.suppress(Exception):
                    await binding.stop(chat)
        for name in dir(binding):
            if name.startswith("on_"):
                with contextlib.suppress(Exception):
                    getattr(binding, name)(_ignore)
    executor = getattr(calls, "executor", None)
    if isinstance(executor, ThreadPoolExecutor):
        executor.shutdown(wait=False, cancel_futures=True)


def quiet_version_check() -> None:
    """Skip py-tgcalls' GitHub version check (and its banner) for this process.

    ``PyTgCallsSession.notice_displayed`` is the flag py-tgcalls sets after its first check so
    it runs once per process; set beforehand, no request is made. Versions are logged at open.
    """
    PyTgCallsSession.notice_displayed = True


def build_telegram_output(
    settings: Settings,
    events: EngineEvents | None,
    on_session_dead: Callable[[str], None] | None = None,
    call_events: CallEvents | None = None,
) -> TelegramOutput:
    """The real output: a pyrogram client (session in memory) wrapped by py-tgcalls."""
    if settings.CHAT_ID is None:
        raise ConfigError("the Telegram output needs CHAT_ID (the group's id, e.g. -100123...)")
    session = credentials(settings)[2]
    quiet_version_check()

    def new_client() -> TgCallsLike:
        calls: TgCallsLike = PyTgCalls(make_client(settings, updates=True))
        return calls

    async def preflight() -> str | None:
        problem = await session_problem(session)
        return f"{problem}; {SESSION_HINT}" if problem else None

    return TelegramOutput(
        new_client(),
        settings.CHAT_ID,
        settings.quality,
        events,
        preflight=preflight,
        on_session_dead=on_session_dead,
        new_client=new_client,
        call_events=call_events,
        on_call_ended=settings.ON_CALL_ENDED,
    )
