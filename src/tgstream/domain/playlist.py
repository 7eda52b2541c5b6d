"""The playlist file: parsing with per-line errors, expansion into items, and the play order.

One entry per line; ``#`` at the start of a line (or after whitespace) starts a comment.
An entry is a local file, a directory (its media files, sorted naturally), or a URL:
``http(s)`` URLs are resolved with yt-dlp (which also expands playlists); ``rtmp``, ``rtsp``,
``srt`` and ``udp`` URLs go to ffmpeg as they are.

>>> parsed = parse_playlist("# demo\\nhttps://example.org/a.mp4\\nftp://x/y\\n", Path("/"))
>>> [e.text for e in parsed.entries], [(e.line, e.reason[:22]) for e in parsed.errors]
(['https://example.org/a.mp4'], [(3, 'unsupported URL scheme')])
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

__all__ = [
    "Entry",
    "LineError",
    "ParsedPlaylist",
    "Item",
    "parse_playlist",
    "expand",
    "Rotation",
    "MEDIA_SUFFIXES",
]

EntryKind = Literal["file", "dir", "url", "stream"]

MEDIA_SUFFIXES: Final = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mkv",
        ".webm",
        ".mov",
        ".avi",
        ".flv",
        ".ts",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".3gp",
        ".mp3",
        ".m4a",
        ".aac",
        ".ogg",
        ".oga",
        ".opus",
        ".wav",
        ".flac",
        ".m3u8",
    ]
)
_URL_SCHEMES: Final = frozenset({"http", "https"})
_STREAM_SCHEMES: Final = frozenset({"rtmp", "rtmps", "rtsp", "srt", "udp", "rtp"})
_COMMENT: Final = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    text: str
    kind: EntryKind
    target: str
    """Absolute path for files and directories; the URL for URLs."""


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.text!r}"


@dataclass(frozen=True, slots=True)
class ParsedPlaylist:
    entries: tuple[Entry, ...]
    errors: tuple[LineError, ...]


@dataclass(frozen=True, slots=True)
class Item:
    """One playable thing. ``key`` survives edits that move lines, so order state is kept."""

    key: str
    source: str
    kind: EntryKind
    line: int
    title: str = ""

    @property
    def display(self) -> str:
        return self.title or self.source


def _classify(text: str, base: Path) -> tuple[EntryKind, str] | str:
    """Return ``(kind, target)``, or the reason the line is invalid."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in _URL_SCHEMES:
        return ("url", text) if parts.netloc else "URL has no host"
    if scheme in _STREAM_SCHEMES:
        return ("stream", text) if parts.netloc else "URL has no host"
    if scheme == "file":
        text = unquote(parts.path)
    elif len(scheme) > 1 and "://" in text:
        return (
            f"unsupported URL scheme {scheme!r} (use a file path, http(s), "
            "rtmp(s), rtsp, srt or udp)"
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        return ("dir", str(path))
    if path.is_file():
        return ("file", str(path))
    if path.exists():
        return "not a regular file or directory"
    return f"file not found ({path})"


def parse_playlist(text: str, base: Path) -> ParsedPlaylist:
    """Parse playlist text; relative paths are relative to ``base`` (the file's directory)."""
    entries: list[Entry] = []
    errors: list[LineError] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        result = _classify(line, base)
        if isinstance(result, str):
            errors.append(LineError(number, line, result))
        else:
            entries.append(Entry(number, line, result[0], result[1]))
    return ParsedPlaylist(tuple(entries), tuple(errors))


def _natural(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _media_files(directory: Path) -> list[Path]:
    files = [
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MEDIA_SUFFIXES
    ]
    return sorted(files, key=_natural)


def expand(
    entries: Iterable[Entry],
    expansions: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    list_dir: Callable[[Path], list[Path]] = _media_files,
) -> list[Item]:
    """Entries to items: directories list their media files; URLs known to be playlists
    (``expansions[url]`` = ``[(item_url, title), ...]``) list their items."""
    expansions = expansions or {}
    seen: Counter[str] = Counter()
    items: list[Item] = []

    def add(source: str, kind: EntryKind, line: int, title: str = "") -> None:
        seen[source] += 1
        items.append(Item(f"{source}#{seen[source]}", source, kind, line, title))

    for entry in entries:
        if entry.kind == "dir":
            for path in list_dir(Path(entry.target)):
                add(str(path), "file", entry.line)
        elif entry.kind == "url" and entry.target in expansions:
            for url, title in expansions[entry.target]:
                add(url, "url", entry.line, title)
        else:
            add(entry.target, entry.kind, entry.line)
    return items


@dataclass
class Rotation:
    """The play order over a list of items that may change between picks (hot reload).

    In order: after the last item played, the next one in the current list. Shuffled: a random
    item not yet played in this cycle. A cycle ends when every current item has played; with
    ``loop`` a new cycle starts, otherwise :meth:`next` returns ``None``.
    """

    loop: bool = True
    shuffle: bool = False
    rng: random.Random = field(default_factory=random.Random)
    played: set[str] = field(default_factory=set)
    last: str | None = None
    last_line: int = 0
    cycles: int = 0
    _undo: tuple[str | None, int] = (None, 0)

    def next(self, items: Sequence[Item]) -> Item | None:
        if not items:
            return None
        choice = self._pick(items)
        if choice is None:
            self.cycles += 1
            if not self.loop:
                return None
            self.played.clear()
            choice = self._pick(items, new_cycle=True)
            assert choice is not None
        self.played.add(choice.key)
        self._undo = (self.last, self.last_line)
        self.last, self.last_line = choice.key, choice.line
        return choice

    def _pick(self, items: Sequence[Item], new_cycle: bool = False) -> Item | None:
        unplayed = [i for i in items if i.key not in self.played]
        if not unplayed:
            return None
        if self.shuffle:
            # Avoid the same item twice in a row across a cycle boundary when there is a choice.
            pool = [i for i in unplayed if i.key != self.last] if new_cycle else unplayed
            return self.rng.choice(pool or unplayed)
        keys = [i.key for i in items]
        if new_cycle:
            return unplayed[0]
        if self.last in keys:
            after = items[keys.index(self.last) + 1 :]
            return next((i for i in after if i.key not in self.played), None)
        # The last item left the list (edited out, or a URL expanded into its playlist items):
        # go on from its line, so an expanded playlist plays from its first item.
        return next((i for i in unplayed if i.line >= self.last_line), None)

    def rewind(self, item: Item) -> None:
        """Undo the latest pick, of ``item`` (prepared but never played): the next pick
        returns it again, and the order continues as if it had not been picked."""
        self.played.discard(item.key)
        if self.last == item.key:
            self.last, self.last_line = self._undo
