"""Turn a playlist item into a :class:`Track`: yt-dlp for http(s) URLs, then ffprobe.

yt-dlp runs as a child process (``python -m yt_dlp -J``) so that a hung extractor can be killed
and never outlives the service. A URL that turns out to be a playlist comes back as an
:class:`Expansion` of item URLs, which the catalog remembers.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, replace
from typing import Any

from opskit.procs import Children
from tgstream.adapters.probe import Prober
from tgstream.config import Quality
from tgstream.domain.playlist import Item
from tgstream.domain.track import Track
from tgstream.errors import SourceError

__all__ = ["Expansion", "Resolver", "ytdlp_format"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expansion:
    """``source`` is a playlist; ``items`` are its entries as ``(url, title)``."""

    source: str
    items: tuple[tuple[str, str], ...]


def ytdlp_format(quality: Quality) -> str:
    """Prefer H.264 + AAC (remuxable) at or below the target height, then anything that fits."""
    if not quality.has_video:
        return "ba/b"
    h = quality.height
    return (
        f"bv*[height<={h}][vcodec^=avc1]+ba[acodec^=mp4a]/b[height<={h}][vcodec^=avc1]"
        f"/bv*[height<={h}]+ba/b[height<={h}]/b"
    )


def _ytdlp_error(stderr: str, url: str) -> SourceError:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("ERROR")] or [
        stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    ]
    text = lines[-1].removeprefix("ERROR: ")
    if "404" in text or "not found" in text.lower():
        return SourceError("not_found", f"{url}: not found ({text}); fix or remove the entry")
    return SourceError("resolve", f"{url}: yt-dlp cannot resolve it ({text})")


def _headers(fmt: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (fmt.get("http_headers") or {}).items()))


class Resolver:
    def __init__(
        self,
        children: Children,
        prober: Prober,
        quality: Quality,
        timeout: float = 60.0,
        ytdlp: tuple[str, ...] = (sys.executable, "-m", "yt_dlp"),
    ) -> None:
        self._children = children
        self._prober = prober
        self._quality = quality
        self._timeout = timeout
        self._ytdlp = ytdlp

    async def resolve(self, item: Item) -> Track | Expansion:
        if item.kind != "url":
            info = await self._prober.probe(item.source, timeout=min(self._timeout, 20.0))
            return Track(item, item.source, info, title=item.title)
        doc = await self._ytdlp_json(item.source)
        if doc.get("_type") in ("playlist", "multi_video"):
            entries = tuple(
                (str(e.get("url") or e.get("webpage_url")), str(e.get("title") or ""))
                for e in doc.get("entries") or []
                if e and (e.get("url") or e.get("webpage_url"))
            )
            if not entries:
                raise SourceError("resolve", f"{item.source}: playlist has no playable items")
            log.info("expanded playlist %s into %d items", item.source, len(entries))
            return Expansion(item.source, entries)
        requested = doc.get("requested_formats") or []
        title = str(doc.get("title") or item.title)
        if len(requested) == 2:
            video, audio = requested
            url, audio_url, headers = str(video["url"]), str(audio["url"]), _headers(video)
        elif doc.get("url"):
            url, audio_url, headers = str(doc["url"]), None, _headers(doc)
        else:
            raise SourceError("resolve", f"{item.source}: yt-dlp returned no media URL")
        info = await self._prober.probe(url, headers, timeout=min(self._timeout, 20.0))
        if audio_url is not None:  # audio facts come from the separate audio stream
            audio = await self._prober.probe(audio_url, headers, timeout=min(self._timeout, 20.0))
            info = replace(
                info, acodec=audio.acodec, sample_rate=audio.sample_rate, channels=audio.channels
            )
        return Track(item, url, info, audio_url=audio_url, headers=headers, title=title)

    async def _ytdlp_json(self, url: str) -> dict[str, Any]:
        argv = [
            *self._ytdlp,
            "-J",
            "--flat-playlist",
            "--no-warnings",
            "--no-progress",
            "--socket-timeout",
            "15",
            "-f",
            ytdlp_format(self._quality),
            "--",
            url,
        ]
        log.info("yt-dlp resolving %s", url)
        try:
            code, out, err = await self._children.run(argv, timeout=self._timeout)
        except TimeoutError:
            raise SourceError(
                "resolve", f"{url}: yt-dlp gave no answer in {self._timeout:.0f}s (RESOLVE_TIMEOUT)"
            ) from None
        if code != 0:
            raise _ytdlp_error(err.decode(errors="replace"), url)
        try:
            doc: dict[str, Any] = json.loads(out)
        except json.JSONDecodeError:
            raise SourceError("resolve", f"{url}: yt-dlp printed no JSON") from None
        return doc
