"""The playlist file as the engine sees it: loaded, watched for edits, expanded, rotated.

An edit takes effect at the next track: the engine asks :meth:`Catalog.reload_if_changed`
while a track plays. A reload that would leave nothing playable (file deleted, every line
invalid) is refused with an ERROR and the previous list stays in force, so a bad save never
takes the broadcast down.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from tgstream.domain.playlist import Item, ParsedPlaylist, Rotation, expand, parse_playlist
from tgstream.errors import PlaylistError

__all__ = ["Catalog"]

log = logging.getLogger(__name__)


class Catalog:
    def __init__(
        self, path: Path, loop: bool = True, shuffle: bool = False, rng: random.Random | None = None
    ) -> None:
        self.path = path
        self.rotation = Rotation(loop=loop, shuffle=shuffle, rng=rng or random.Random())
        self._expansions: dict[str, tuple[tuple[str, str], ...]] = {}
        self._parsed = ParsedPlaylist((), ())
        self._items: list[Item] = []
        self._stamp: tuple[int, int] | None = None

    @property
    def items(self) -> Sequence[Item]:
        return self._items

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> ParsedPlaylist:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PlaylistError(
                f"playlist {self.path} not found; create it (one file, directory or URL per "
                "line) or set PLAYLIST_FILE"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PlaylistError(
                f"playlist {self.path} cannot be read ({exc}); "
                "check its permissions and that it is UTF-8 text"
            ) from None
        parsed = parse_playlist(text, self.path.resolve().parent)
        for error in parsed.errors:
            log.warning("%s %s; line skipped", self.path, error)
        if not parsed.entries:
            # The reasons go in the message itself: `tgstream check` shows no WARNING lines.
            shown = "; ".join(str(e) for e in parsed.errors[:3])
            more = f"; and {len(parsed.errors) - 3} more" if len(parsed.errors) > 3 else ""
            what = (
                f"all {len(parsed.errors)} entries are invalid ({shown}{more})"
                if parsed.errors
                else "it has no entries"
            )
            raise PlaylistError(
                f"playlist {self.path}: {what}; add at least one playable file, directory or URL"
            )
        return parsed

    def load(self) -> ParsedPlaylist:
        """First load; raises :class:`PlaylistError` (exit code 3) when nothing is playable."""
        self._stamp = self._stat()
        self._parsed = self._read()
        self._rebuild()
        if not self._items:
            raise PlaylistError(
                f"playlist {self.path}: its directories hold no media files; add files or entries"
            )
        log.info(
            "playlist %s: %d entries, %d items, %d invalid lines",
            self.path,
            len(self._parsed.entries),
            len(self._items),
            len(self._parsed.errors),
        )
        return self._parsed

    def reload_if_changed(self) -> bool:
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            parsed = self._read()
        except PlaylistError as exc:
            log.error("%s; keeping the previous playlist (%d items)", exc, len(self._items))
            return False
        items = expand(parsed.entries, self._expansions)
        if not items:
            log.error(
                "playlist %s: its directories hold no media files; keeping the previous "
                "playlist (%d items)",
                self.path,
                len(self._items),
            )
            return False
        self._parsed, self._items = parsed, items
        log.info("playlist reloaded: %d items; takes effect at the next track", len(self._items))
        return True

    def _rebuild(self) -> None:
        self._items = expand(self._parsed.entries, self._expansions)

    def add_expansion(self, source: str, items: tuple[tuple[str, str], ...]) -> None:
        self._expansions[source] = items
        self._rebuild()

    def next(self) -> Item | None:
        """The next item to play, or ``None`` when ``LOOP=0`` and the playlist has played."""
        return self.rotation.next(self._items)
