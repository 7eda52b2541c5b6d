"""The broadcast under a session watch: degraded mode, recovery without restart, alerts.

For outputs without a Telegram session (``rtmp``, ``preview``) the supervisor only runs the
engine. For ``telegram``::

    start ──verify (3 tries on network errors)──▶ valid ──▶ engine runs ◀────────────┐
                     │ dead                                  │ session refused           │
                     ▼                                       ▼ (output or watch)         │
    SESSION_RECOVERY=exit: ERROR, exit 1          engine stops, position kept           │
    AUTO_REGEN=1 on a terminal: helper, exit 0/1         │                              │
    otherwise: DEGRADED ◀────────────────────────────────┘                              │
        every REAUTH_INTERVAL: WARN, re-read .env, up to 3 tries ──valid──▶ resume ─────┘

While degraded nothing streams; the process stays up so systemd does not restart-loop, and its
state is visible (``status``, and the session events for metrics).

Out of the video chat with a valid session (kicked, removed, muted, the video chat ended) is not
degraded mode: the output rejoins on its own, and :class:`CallWatch` makes it visible (its
state for ``/status``, the ``call_state`` metric, and Bot API alerts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from tgstream.callstate import (
    OPERATOR_REASONS,
    REASON_HINTS,
    CallEvents,
    CallState,
    NullCallEvents,
)
from tgstream.config import Settings
from tgstream.domain.playlist import Item
from tgstream.errors import ExitCode, OutputError, SessionError
from tgstream.session import (
    RECOVERY_COMMAND,
    SESSION_HINT,
    Alerter,
    NullSessionEvents,
    SessionEvents,
    SessionState,
    SessionVerifier,
    Verdict,
)

__all__ = [
    "CallWatch",
    "Supervisor",
    "SupervisorStatus",
    "EngineLike",
    "EngineFactory",
    "TRIES_PER_CYCLE",
    "CALL_ALERT_GRACE",
]

log = logging.getLogger(__name__)

TRIES_PER_CYCLE: Final = 3
TRY_BACKOFF: Final = 1.0
"""Seconds before the second quick try of a cycle; doubled before the third."""

CALL_ALERT_GRACE: Final = 60.0
"""Seconds out of the video chat, for a reason that usually heals alone, before an alert."""

Resume = tuple[Item, float]


class CallWatch:
    """The Telegram output's place in the video chat, for people (a :class:`CallEvents` sink).

    Keeps the state (``/status``, systemd's STATUS line), passes each change on to ``events``
    (the metrics), and alerts through ``alerter``: a reason that needs a person (kicked, removed,
    muted, the video chat ended, no right to start one) at once; any other (a dropped
    connection, a timeout, a refusal) only if the output is still not in the call ``grace``
    seconds later. One alert per outage; back in the call after it, a second alert says so.
    """

    def __init__(
        self,
        chat_id: int | str | None,
        alerter: Alerter | None = None,
        events: CallEvents | None = None,
        *,
        grace: float = CALL_ALERT_GRACE,
    ) -> None:
        self._chat_id = chat_id
        self._alerter = alerter
        self._events: CallEvents = events or NullCallEvents()
        self._grace = grace
        self.state: CallState = "none"
        self.reason = ""
        self.detail = ""
        self.since = time.time()
        self.rebuilds = 0
        self._alerted = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def call_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        if (state, reason) != (self.state, self.reason):
            self.since = time.time()
        self.state, self.reason, self.detail = state, reason, detail
        self._events.call_state(state, reason, detail)
        if state in ("out", "muted", "joining") and reason != "session":
            if state == "muted" or reason in OPERATOR_REASONS:
                self._alert_out()
            elif self._timer is None and not self._alerted:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._grace, self._alert_out)
            return
        self._cancel_timer()
        if state == "in_call" and self._alerted:
            self._alerted = False
            self._alert("call_back", f"{self._who()}: back in the video chat, viewers get it again")
        elif state == "none" or reason == "session":
            self._alerted = False  # closed, or degraded mode (which alerts on its own)

    def client_rebuilt(self) -> None:
        self.rebuilds += 1
        self._events.client_rebuilt()

    async def drain(self, timeout: float = 5.0) -> None:
        self._cancel_timer()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)

    def describe(self) -> str:
        """One line: the state and, when out, why."""
        return f"{self.state} ({self.reason})" if self.reason else self.state

    def _alert_out(self) -> None:
        self._timer = None
        if self._alerted or self.state not in ("out", "muted", "joining"):
            return  # one alert per outage: the rejoin's own refusals say nothing new
        if self.state == "muted":
            head = "MUTED BY AN ADMIN in the video chat, viewers get the picture without sound"
        else:
            head = "OUT OF THE VIDEO CHAT, viewers get nothing"
        why = self.reason or "still joining"
        detail = f" ({self.detail})" if self.detail and self.detail != self.reason else ""
        hint = REASON_HINTS.get(self.reason, "")
        self._alerted = True
        self._alert(
            "call_out",
            f"{self._who()}: {head}; {why}{detail}. {hint}".rstrip(". ") + ".",
        )

    def _who(self) -> str:
        return f"tgstream on {socket.gethostname()} (CHAT_ID={self._chat_id})"

    def _alert(self, kind: str, text: str) -> None:
        if self._alerter is None:
            return
        task = asyncio.create_task(self._alerter.notify(kind, text), name="call-alert")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class EngineLike(Protocol):
    """The part of :class:`~tgstream.engine.Engine` the supervisor drives."""

    last_unit_at: float | None

    @property
    def resume_point(self) -> Resume | None: ...

    async def run(self, stop: asyncio.Event) -> ExitCode: ...


EngineFactory = Callable[[Settings, Callable[[str], None], Resume | None], EngineLike]
"""``(settings, on_session_dead, resume) -> engine``: a new engine (and output) per session."""


@dataclass
class SupervisorStatus:
    """What ``/status`` shows (the metrics issue serves it)."""

    session: SessionState = "none"
    degraded: bool = False
    reason: str = ""
    since: float = field(default_factory=time.time)
    """Wall-clock time the current state began."""


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        make_engine: EngineFactory,
        *,
        verifier: SessionVerifier | None = None,
        reload: Callable[[], Settings] | None = None,
        alerter: Alerter | None = None,
        events: SessionEvents | None = None,
        regen: Callable[[], Awaitable[int]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        calls: CallWatch | None = None,
    ) -> None:
        """``reload`` re-reads ``.env`` (each degraded cycle); ``regen`` runs the interactive
        helper and returns its exit code (given only when a terminal is attached); ``calls``
        is the call-state watch the Telegram outputs report to."""
        self.settings = settings
        self._make_engine = make_engine
        self._verifier = verifier
        self._reload = reload
        self._alerter = alerter
        self._events: SessionEvents = events or NullSessionEvents()
        self._regen = regen
        self._sleep = sleep
        self.calls = calls
        self.status = SupervisorStatus()
        self._alerts: set[asyncio.Task[None]] = set()
        self._engine: EngineLike | None = None
        self._engine_since = time.monotonic()

    @property
    def supervised(self) -> bool:
        return self.settings.output == "telegram" and self._verifier is not None

    async def run(self, stop: asyncio.Event) -> int:
        try:
            if not self.supervised:
                engine = self._make_engine(self.settings, _ignore, None)
                self._adopt(engine)
                return int(await engine.run(stop))
            return await self._supervise(stop)
        finally:
            if self._alerts:
                await asyncio.wait(self._alerts, timeout=5.0)
            if self.calls is not None:
                await self.calls.drain()

    # ---- the session loop ------------------------------------------------------------------

    async def _supervise(self, stop: asyncio.Event) -> int:
        verdict = await self._authenticate(stop)
        resume: Resume | None = None
        while not stop.is_set():
            if verdict is None:
                return int(ExitCode.OK)  # stopped while checking
            if not verdict.valid:
                if verdict.dead:
                    code = await self._on_dead(verdict)
                    if code is not None:
                        return code
                recovered = await self._degraded(stop, verdict)
                if recovered is None:
                    return int(ExitCode.OK)
                verdict = recovered
                continue
            refused, resume, code = await self._stream(stop, resume)
            if refused is None:
                return code
            verdict = refused
        return int(ExitCode.OK)

    async def _authenticate(self, stop: asyncio.Event) -> Verdict | None:
        """Up to :data:`TRIES_PER_CYCLE` tries; only "unreachable" is tried again."""
        self._set_session("checking")
        verdict: Verdict | None = None
        for attempt in range(1, TRIES_PER_CYCLE + 1):
            verdict = await self._verify()
            if verdict.kind != "unreachable" or attempt == TRIES_PER_CYCLE:
                break
            wait = TRY_BACKOFF * 2 ** (attempt - 1)
            log.warning(
                "session check %d of %d: %s; retrying in %gs",
                attempt,
                TRIES_PER_CYCLE,
                verdict.detail,
                wait,
            )
            if await self._wait(stop, wait):
                return None
        assert verdict is not None
        if verdict.valid:
            log.info("telegram session valid: %s", verdict.detail)
        self._set_session(verdict.kind)
        return verdict

    async def _verify(self) -> Verdict:
        assert self._verifier is not None
        verdict = await self._verifier.verify(self.settings)
        self._events.reauth_attempt(verdict.kind)
        return verdict

    async def _on_dead(self, verdict: Verdict) -> int | None:
        """The ERROR with the way out; an exit code when the mode ends the process."""
        log.error(
            "Telegram session invalid (%s): %s; recovery: run `%s` (same as `tgstream session "
            "new --write-env .env`)%s",
            verdict.cause,
            verdict.detail.split("; create a new one")[0],
            RECOVERY_COMMAND,
            ", then restart the service" if self.settings.SESSION_RECOVERY == "exit" else "",
        )
        if self.settings.SESSION_RECOVERY == "exit":
            return int(ExitCode.FAILURE)
        if self.settings.AUTO_REGEN and self._regen is not None:
            log.warning("AUTO_REGEN=1 and a terminal is attached: starting the session helper")
            return await self._regen()
        if self.settings.AUTO_REGEN:
            log.warning("AUTO_REGEN=1 but no terminal is attached: going to degraded mode instead")
        return None

    async def _degraded(self, stop: asyncio.Event, verdict: Verdict) -> Verdict | None:
        """Wait for a session that works; ``None`` when stopped first."""
        reason = f"{verdict.cause}: {verdict.detail}"
        self._enter_degraded(verdict, reason)
        while True:
            if verdict.dead:
                log.warning("Degraded mode; SESSION_STRING invalid; run: %s", RECOVERY_COMMAND)
            else:
                log.warning(
                    "Degraded mode; Telegram unreachable (%s); retrying every %gs",
                    verdict.cause,
                    self.settings.REAUTH_INTERVAL,
                )
            if await self._wait(stop, self.settings.REAUTH_INTERVAL):
                return None
            self._reread_env()
            for attempt in range(1, TRIES_PER_CYCLE + 1):
                verdict = await self._verify()
                log.info(
                    "re-authentication try %d of %d: %s (%s)",
                    attempt,
                    TRIES_PER_CYCLE,
                    verdict.kind,
                    verdict.cause,
                )
                if verdict.valid:
                    self._leave_degraded(verdict)
                    return verdict
                if attempt < TRIES_PER_CYCLE and await self._wait(
                    stop, TRY_BACKOFF * 2 ** (attempt - 1)
                ):
                    return None

    def _reread_env(self) -> None:
        """Adopt the credentials of ``.env`` as it is now; everything else stays as started
        (the engine's quality and FFMPEG_ARGS were fixed at start)."""
        if self._reload is None:
            return
        try:
            fresh = self._reload()
        except Exception as exc:  # a broken .env must never end a degraded service
            log.error("re-reading .env failed, keeping the settings in force: %s", exc)
            return
        if fresh.SESSION_STRING != self.settings.SESSION_STRING:
            log.info("SESSION_STRING changed in .env; trying the new one")
        self.settings = self.settings.model_copy(
            update={k: getattr(fresh, k) for k in ("API_ID", "API_HASH", "SESSION_STRING")}
        )

    async def _stream(
        self, stop: asyncio.Event, resume: Resume | None
    ) -> tuple[Verdict | None, Resume | None, int]:
        """Run one engine until stop or until the session is refused.

        Returns ``(verdict, resume, code)``: a dead verdict and where to resume when the
        session was refused, else ``None`` and the engine's exit code.
        """
        refused: list[str] = []
        pause = asyncio.Event()

        def on_session_dead(cause: str) -> None:
            if not refused:
                refused.append(cause)
            pause.set()

        engine = self._make_engine(self.settings, on_session_dead, resume)
        self._adopt(engine)
        relay = asyncio.create_task(_relay(stop, pause), name="stop-relay")
        watch = asyncio.create_task(self._watch(pause, on_session_dead), name="session-watch")
        try:
            code = int(await engine.run(pause))
        except SessionError as exc:
            on_session_dead(exc.cause)
            code = int(exc.exit_code)
        except OutputError as exc:
            # The session was valid a moment ago: Telegram or the network is the problem.
            log.error("the Telegram output could not start: %s", exc)
            self._set_session("unreachable")
            return Verdict("unreachable", "output", str(exc)), engine.resume_point, 0
        finally:
            for task in (relay, watch):
                task.cancel()
            await asyncio.gather(relay, watch, return_exceptions=True)
        if stop.is_set() or not refused:
            return None, None, code
        where = engine.resume_point
        if where is not None:
            log.info(
                "output paused at %s, %.1fs; it resumes there once the session works",
                where[0].display,
                where[1],
            )
        cause = refused[0]
        verdict = Verdict(
            "dead", cause, f"Telegram rejected SESSION_STRING ({cause}); {SESSION_HINT}"
        )
        self._set_session("dead")
        return verdict, where, code

    async def _watch(self, pause: asyncio.Event, on_dead: Callable[[str], None]) -> None:
        """Ask Telegram every SESSION_CHECK_INTERVAL whether the session still works."""
        while not pause.is_set():
            await self._sleep(self.settings.SESSION_CHECK_INTERVAL)
            try:
                verdict = await self._verify()
            except Exception:
                log.exception("session check while streaming failed; checking again later")
                continue
            if verdict.dead:
                on_dead(verdict.cause)
            elif not verdict.valid:
                log.warning("session check while streaming: %s", verdict.detail)

    # ---- liveness (systemd's readiness and watchdog) ----------------------------------------

    def _adopt(self, engine: EngineLike) -> None:
        self._engine = engine
        self._engine_since = time.monotonic()

    def ready(self) -> bool:
        """On air (the first unit is out) or knowingly degraded: what READY=1 announces."""
        if self.status.degraded:
            return True
        return self._engine is not None and self._engine.last_unit_at is not None

    def alive(self, now: float, stall: float) -> bool:
        """Whether the pipeline moves: a unit written within ``stall`` seconds, or nothing
        is expected of it (degraded, or an engine still within ``stall`` of its start)."""
        if self.status.degraded or self._engine is None:
            return True
        last = self._engine.last_unit_at
        return now - (last if last is not None else self._engine_since) < stall

    # ---- state, alerts ----------------------------------------------------------------------

    def _set_session(self, state: SessionState) -> None:
        if self.status.session != state:
            self.status.session = state
            self.status.since = time.time()
        self._events.session_state(state)

    def _enter_degraded(self, verdict: Verdict, reason: str) -> None:
        self.status.degraded = True
        self.status.reason = reason
        self.status.since = time.time()
        self._events.degraded(True, reason)
        what = "SESSION_STRING invalid" if verdict.dead else "Telegram unreachable"
        self._alert(
            "degraded",
            f"tgstream on {socket.gethostname()}: DEGRADED, nothing is streaming; {what} "
            f"({verdict.cause}). Fix: {RECOVERY_COMMAND}"
            if verdict.dead
            else f"tgstream on {socket.gethostname()}: DEGRADED, nothing is streaming; {what} "
            f"({verdict.cause})",
        )

    def _leave_degraded(self, verdict: Verdict) -> None:
        log.info(
            "session valid again (%s); leaving degraded mode, streaming resumes", verdict.detail
        )
        self.status.degraded = False
        self.status.reason = ""
        self.status.since = time.time()
        self._set_session("valid")
        self._events.degraded(False, "")
        self._alert("recovered", f"tgstream on {socket.gethostname()}: recovered, streaming again")

    def _alert(self, kind: str, text: str) -> None:
        if self._alerter is None:
            return
        task = asyncio.create_task(self._alerter.notify(kind, text), name="alert")
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def _wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; returns whether stop was set."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return stop.is_set()


async def _relay(stop: asyncio.Event, pause: asyncio.Event) -> None:
    await stop.wait()
    pause.set()


def _ignore(_cause: str) -> None:
    pass
