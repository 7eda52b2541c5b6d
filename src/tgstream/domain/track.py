"""A resolved track: what ffmpeg opens, and what ffprobe said about it."""

from __future__ import annotations

from dataclasses import dataclass

from tgstream.domain.playlist import Item

__all__ = ["MediaInfo", "Track"]


@dataclass(frozen=True, slots=True)
class MediaInfo:
    duration: float | None
    """Seconds; ``None`` for a live stream."""
    vcodec: str | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    pix_fmt: str | None = None
    acodec: str | None = None
    sample_rate: int = 0
    channels: int = 0
    max_keyframe_interval: float | None = None
    """Largest gap between keyframes in the first seconds; only measured when it matters."""

    @property
    def has_video(self) -> bool:
        return self.vcodec is not None and self.width > 0

    @property
    def has_audio(self) -> bool:
        return self.acodec is not None

    @property
    def live(self) -> bool:
        return self.duration is None


@dataclass(frozen=True, slots=True)
class Track:
    """An item ready to open. ``audio_url`` is set when video and audio come separately."""

    item: Item
    url: str
    info: MediaInfo
    audio_url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    title: str = ""

    @property
    def display(self) -> str:
        return self.title or self.item.display
