"""tgstream's Prometheus metrics and its ``/healthz`` and ``/status`` documents.

:class:`Metrics` is the events sink of the engine (:class:`~tgstream.ports.EngineEvents`), the
supervisor (:class:`~tgstream.session.SessionEvents`) and the Telegram output's call state
(:class:`~tgstream.callstate.CallEvents`); it writes into an injected
``CollectorRegistry``. Label values come from bounded sets only (failure reasons, session
states, re-authentication results); titles and URLs appear in ``/status``, never as labels.

Everything here is called on the event loop (events) or on the exporter's threads (the two
documents); the few shared fields are plain assignments, read whole.

``stream_up`` is 1 while the output is fed (a track, the slate, or the slate between failed
rounds) *and* what it is fed reaches the viewers: for the Telegram output, while ``call_state``
is ``in_call`` (not joining, out of the call, or muted by an admin); for RTMP and the preview,
while the publisher's destination takes the stream (0 while it reconnects).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info

from tgstream import __version__
from tgstream.callstate import CALL_REASONS, CALL_STATES, CallState
from tgstream.errors import SOURCE_FAILURE_REASONS
from tgstream.session import SESSION_STATES, SessionState

__all__ = ["Metrics", "BROADCAST_STATES", "HEALTH_STALE_SECONDS"]

BROADCAST_STATES: Final = ("starting", "streaming", "slate", "all_failed", "degraded", "stopping")
REAUTH_RESULTS: Final = ("valid", "dead", "unreachable")
HEALTH_STALE_SECONDS: Final = 15.0
"""``/healthz`` turns 503 when the main loop has not ticked for this long."""


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        output: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self.started_at = clock()
        self.streams_played = Counter(
            "streams_played", "Tracks that started playing.", registry=registry
        )
        self.track_failures = Counter(
            "track_failures", "Tracks skipped, by cause.", ["reason"], registry=registry
        )
        for reason in SOURCE_FAILURE_REASONS:
            self.track_failures.labels(reason)
        self.ffmpeg_restarts = Counter(
            "ffmpeg_restarts", "Source ffmpeg processes restarted mid-track.", registry=registry
        )
        self.source_holes = Counter(
            "source_holes",
            "Holes in a source's own timeline (it skipped ahead), cut out of the output.",
            registry=registry,
        )
        self.source_hole_seconds = Counter(
            "source_hole_seconds",
            "Seconds of source timeline skipped by those holes.",
            registry=registry,
        )
        self.reauth_attempts = Counter(
            "session_reauth_attempts",
            "Telegram session checks, by result.",
            ["result"],
            registry=registry,
        )
        for result in REAUTH_RESULTS:
            self.reauth_attempts.labels(result)
        self.output_reconnects = Counter(
            "output_reconnects", "Reconnections of the output after it was lost.", registry=registry
        )
        self.degraded_gauge = Gauge(
            "degraded", "1 while degraded: nothing streams (see /status).", registry=registry
        )
        self.session_state_enum = Enum(
            "session_state",
            "The Telegram session's state.",
            states=list(SESSION_STATES),
            registry=registry,
        )
        self.broadcast_state = Enum(
            "broadcast_state",
            "What the broadcast is doing.",
            states=list(BROADCAST_STATES),
            registry=registry,
        )
        self.last_error = Gauge(
            "last_error_timestamp_seconds", "Unix time of the latest error.", registry=registry
        )
        self.stream_up = Gauge(
            "stream_up",
            "1 while the output is fed (a track or the slate) and reaches the viewers.",
            registry=registry,
        )
        self.call_state_enum = Enum(
            "call_state",
            "The Telegram output in the video chat (none for other outputs).",
            states=list(CALL_STATES),
            registry=registry,
        )
        self.call_reason_enum = Enum(
            "call_out_reason",
            "Why the Telegram output is out of the video chat or muted ('' while in it).",
            states=[r or "none" for r in CALL_REASONS],
            registry=registry,
        )
        self.client_rebuilds = Counter(
            "call_client_rebuilds",
            "py-tgcalls and MTProto clients rebuilt after repeated join refusals.",
            registry=registry,
        )
        self.track_started_at = Gauge(
            "current_track_started_timestamp_seconds",
            "Unix time the current track started.",
            registry=registry,
        )
        self.playlist_items = Gauge(
            "playlist_items", "Playable items in the playlist.", registry=registry
        )
        self.track_start = Histogram(
            "track_start_seconds",
            "Time to get a track ready: resolve, probe and start its ffmpeg.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.track_gap = Histogram(
            "track_change_gap_seconds",
            "Output time not covered by media at a track change (the slate covers it).",
            buckets=(0.01, 0.033, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=registry,
        )
        Info("build", "Version and runtime.", registry=registry).info(
            {"version": __version__, "python": platform.python_version(), "output": output}
        )
        self.session_state_enum.state("none")
        self.broadcast_state.state("starting")
        self.call_state_enum.state("none")
        self.call_reason_enum.state("none")
        self._state = "starting"
        self._fed = False
        self._flowing = True
        """False while the publisher's destination does not take the stream."""
        self._up = False
        self._call: dict[str, Any] = {"state": "none", "reason": None, "detail": None}
        self._rebuilds = 0
        self._current: dict[str, Any] | None = None
        self._next: str | None = None
        self._last_error: dict[str, Any] | None = None
        self._degraded_reason = ""
        self._session: SessionState = "none"
        self._beat = clock()
        self._items = 0

    # ---- EngineEvents ----------------------------------------------------------------------

    def track_started(self, title: str, prepare_seconds: float, gap_seconds: float | None) -> None:
        now = self._clock()
        self.streams_played.inc()
        self.track_start.observe(prepare_seconds)
        if gap_seconds is not None:
            self.track_gap.observe(gap_seconds)
        self.track_started_at.set(now)
        self._current = {"title": title, "started_at": now}
        self._next = None

    def track_ready(self, title: str) -> None:
        self._next = title

    def track_failed(self, reason: str, detail: str = "") -> None:
        self.track_failures.labels(reason).inc()
        self._error(f"[{reason}] {detail}" if detail else reason)

    def ffmpeg_restarted(self) -> None:
        self.ffmpeg_restarts.inc()
        self._error("ffmpeg restarted mid-track")

    def source_hole(self, seconds: float) -> None:
        self.source_holes.inc()
        self.source_hole_seconds.inc(seconds)

    def output_reconnected(self) -> None:
        self.output_reconnects.inc()
        self._error("output reconnected")

    def output_flowing(self, flowing: bool) -> None:
        self._flowing = flowing
        self._update_stream_up()

    def playlist_size(self, items: int) -> None:
        self.playlist_items.set(items)
        self._items = items

    def state(self, state: str, detail: str = "") -> None:
        if state not in BROADCAST_STATES:
            return
        self._state = state
        self.broadcast_state.state(state)
        self._fed = state in ("streaming", "slate", "all_failed")
        self._update_stream_up()
        if state == "stopping":
            self._current = None

    # ---- CallEvents ------------------------------------------------------------------------

    def call_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        self.call_state_enum.state(state)
        self.call_reason_enum.state(reason if reason in CALL_REASONS and reason else "none")
        self._call = {
            "state": state,
            "reason": reason or None,
            "detail": detail or None,
            "since": self._clock(),
        }
        if state in ("out", "muted"):
            self._error(f"video chat: {state} ({reason}{': ' + detail if detail else ''})")
        self._update_stream_up()

    def client_rebuilt(self) -> None:
        self.client_rebuilds.inc()
        self._rebuilds += 1

    def _update_stream_up(self) -> None:
        self._up = self._fed and self._flowing and self._call["state"] in ("none", "in_call")
        self.stream_up.set(1 if self._up else 0)

    # ---- SessionEvents ---------------------------------------------------------------------

    def session_state(self, state: SessionState) -> None:
        self._session = state
        self.session_state_enum.state(state)

    def degraded(self, active: bool, reason: str) -> None:
        self.degraded_gauge.set(1 if active else 0)
        self._degraded_reason = reason
        if active:
            self.state("degraded")
            self._error(f"degraded: {reason}")

    def reauth_attempt(self, result: str) -> None:
        self.reauth_attempts.labels(result).inc()

    # ---- liveness and the documents ---------------------------------------------------------

    def beat(self) -> None:
        """Called by the main loop; ``/healthz`` fails when it stops."""
        self._beat = self._clock()

    def health(self) -> tuple[int, dict[str, Any]]:
        age = self._clock() - self._beat
        alive = age < HEALTH_STALE_SECONDS
        return (200 if alive else 503), {"alive": alive, "loop_tick_age_seconds": round(age, 3)}

    def status(self) -> tuple[int, dict[str, Any]]:
        now = self._clock()
        return 200, {
            "state": self._state,
            "session": self._session,
            "degraded": self._state == "degraded",
            "degraded_reason": self._degraded_reason or None,
            "stream_up": self._up,
            "call": {**self._call, "client_rebuilds": self._rebuilds},
            "current_track": self._current,
            "next_track": self._next,
            "uptime_seconds": round(now - self.started_at, 1),
            "playlist_items": self._items,
            "last_error": self._last_error,
            "version": __version__,
        }

    def _error(self, message: str) -> None:
        now = self._clock()
        self.last_error.set(now)
        self._last_error = {"at": now, "message": message}
