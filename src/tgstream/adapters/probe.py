"""ffprobe: media facts for a URL or file, with a timeout and causes an operator can act on."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Final

from opskit.procs import Children
from tgstream.domain.track import MediaInfo
from tgstream.errors import SourceError

__all__ = ["Prober", "header_args"]

log = logging.getLogger(__name__)


def header_args(headers: Sequence[tuple[str, str]], url: str) -> list[str]:
    """ffmpeg/ffprobe input options for HTTP headers (only for http inputs)."""
    if not headers or not url.startswith(("http://", "https://")):
        return []
    return ["-headers", "".join(f"{k}: {v}\r\n" for k, v in headers)]


def _fps(stream: dict[str, Any]) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            value = Fraction(stream.get(key, "0/1"))
        except (ValueError, ZeroDivisionError):
            continue
        if value > 0:
            return float(value)
    return 0.0


_CORRUPT: Final = (
    "moov atom not found",  # an MP4 cut short (an upload or copy that never finished)
    "invalid data found when processing input",
    "error reading header",
    "truncat",
    "could not find codec parameters",
)
"""ffprobe's words for a file that is there but is not readable media."""


def _stream_error(stderr: str, url: str) -> SourceError:
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    lowered = stderr.lower()
    # "404" and "no such file" first: "moov atom not found" is about a corrupt file.
    if "404" in lowered or "no such file" in lowered:
        return SourceError("not_found", f"{url}: not found ({text}); fix or remove the entry")
    if any(words in lowered for words in _CORRUPT):
        return SourceError(
            "corrupt",
            f"{url}: corrupt or not a media file ({text}); replace or re-encode it, or remove "
            "the entry",
        )
    if "not found" in lowered:
        return SourceError("not_found", f"{url}: not found ({text}); fix or remove the entry")
    return SourceError("probe", f"{url}: cannot be opened ({text})")


class Prober:
    def __init__(self, children: Children, ffprobe: str = "ffprobe") -> None:
        self._children = children
        self._ffprobe = ffprobe

    async def probe(
        self, url: str, headers: Sequence[tuple[str, str]] = (), timeout: float = 20.0
    ) -> MediaInfo:
        argv = [
            self._ffprobe,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "-rw_timeout",
            str(int(timeout * 1e6)),
            *header_args(headers, url),
            url,
        ]
        try:
            code, out, err = await self._children.run(argv, timeout=timeout)
        except TimeoutError:
            raise SourceError("probe", f"{url}: ffprobe gave no answer in {timeout:.0f}s") from None
        if code != 0:
            raise _stream_error(err.decode(errors="replace"), url)
        doc = json.loads(out or b"{}")
        streams: list[dict[str, Any]] = doc.get("streams", [])
        video = next(
            (
                s
                for s in streams
                if s.get("codec_type") == "video"
                and not s.get("disposition", {}).get("attached_pic")
            ),
            None,
        )
        audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
        if video is None and audio is None:
            raise SourceError("no_media", f"{url}: has neither audio nor video; remove the entry")
        raw_duration = doc.get("format", {}).get("duration")
        duration = float(raw_duration) if raw_duration not in (None, "N/A") else None
        return MediaInfo(
            duration=duration,
            vcodec=video.get("codec_name") if video else None,
            width=int(video.get("width", 0)) if video else 0,
            height=int(video.get("height", 0)) if video else 0,
            fps=_fps(video) if video else 0.0,
            pix_fmt=video.get("pix_fmt") if video else None,
            acodec=audio.get("codec_name") if audio else None,
            sample_rate=int(audio.get("sample_rate", 0)) if audio else 0,
            channels=int(audio.get("channels", 0)) if audio else 0,
        )

    async def max_keyframe_interval(
        self, url: str, headers: Sequence[tuple[str, str]] = (), window: float = 12.0
    ) -> float | None:
        """Largest keyframe gap in the first ``window`` seconds (decodes keyframes only)."""
        argv = [
            self._ffprobe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-read_intervals",
            f"%+{window:g}",
            "-of",
            "csv=p=0",
            *header_args(headers, url),
            url,
        ]
        try:
            code, out, _ = await self._children.run(argv, timeout=20.0)
        except TimeoutError:
            return None
        fields = (line.split(",", 1)[0].strip() for line in out.decode().splitlines())
        times = sorted(float(t) for t in fields if t and t != "N/A")
        if code != 0 or len(times) < 2:
            return None
        return max(b - a for a, b in itertools.pairwise(times))
