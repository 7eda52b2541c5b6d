"""Ports of the engine: what an output must do. Adapters implement them; tests inject fakes."""

from __future__ import annotations

from typing import Protocol

from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe

__all__ = ["Output", "EngineEvents"]


class Output(Protocol):
    """Where the broadcast goes. One ``open``, many ``write``, one ``close``.

    ``write`` must not block for long: a slow or disconnected destination drops units and
    reconnects on its own, while the engine's clock keeps running.

    An output with a true ``reports_flowing`` attribute logs "first frame written to the <name>
    output" itself, when the destination has it (the engine's first write may precede that).
    """

    recipe: Recipe
    """``ts`` for outputs fed MPEG-TS, ``raw`` for outputs fed I420 + PCM frames."""
    name: str

    async def open(self) -> None: ...

    async def write(self, unit: Unit) -> None: ...

    async def close(self) -> None: ...


class EngineEvents(Protocol):
    """What the engine reports (:class:`tgstream.metrics.Metrics` turns it into metrics).

    ``track_started``: ``prepare_seconds`` is the time to resolve, probe and spawn the track;
    ``gap_seconds`` the output time not covered by media just before it (``None``: none).
    ``track_failed``: ``reason`` is one of ``SOURCE_FAILURE_REASONS``.
    """

    def track_started(
        self, title: str, prepare_seconds: float, gap_seconds: float | None
    ) -> None: ...

    def track_ready(self, title: str) -> None: ...

    def track_failed(self, reason: str, detail: str = "") -> None: ...

    def ffmpeg_restarted(self) -> None: ...

    def output_reconnected(self) -> None: ...

    def playlist_size(self, items: int) -> None: ...

    def state(self, state: str, detail: str = "") -> None: ...
