"""The playlist file on disk: first load, and hot reloads that never leave nothing to play."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tgstream.catalog import Catalog
from tgstream.errors import ExitCode, PlaylistError


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (root / name).write_bytes(b"\x00")
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sources(catalog: Catalog) -> list[str]:
    return [Path(i.source).name for i in catalog.items]


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR]


def test_missing_playlist_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "playlist.txt"

    with pytest.raises(PlaylistError, match="not found") as caught:
        Catalog(path).load()

    assert str(path) in str(caught.value)
    assert caught.value.exit_code is ExitCode.PLAYLIST


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # and another\n"])
def test_a_playlist_without_entries_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "playlist.txt", text)

    with pytest.raises(PlaylistError, match="has no entries") as caught:
        Catalog(path).load()

    assert str(path) in str(caught.value)


def test_a_playlist_whose_lines_are_all_invalid_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "playlist.txt", "missing.mp4\nftp://x/y\n# fine\nhttps:///nohost\n")

    with pytest.raises(PlaylistError, match="all 3 entries are invalid"):
        Catalog(path).load()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "line 2: unsupported URL scheme" in warnings[1]


def test_directories_without_media_are_refused_on_load(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    path = write(tmp_path / "playlist.txt", "empty\n")

    with pytest.raises(PlaylistError, match="hold no media files"):
        Catalog(path).load()


def test_load_skips_invalid_lines_and_expands_directories(tmp_path: Path, media: Path) -> None:
    path = write(tmp_path / "playlist.txt", "media/b.mp4\nmissing.mp4\nmedia\n")
    catalog = Catalog(path)

    parsed = catalog.load()

    assert [e.line for e in parsed.entries] == [1, 3]
    assert [e.line for e in parsed.errors] == [2]
    assert sources(catalog) == ["b.mp4", "a.mp4", "b.mp4", "c.mp4"]
    assert len({i.key for i in catalog.items}) == 4


def test_next_follows_the_rotation(tmp_path: Path, media: Path) -> None:
    catalog = Catalog(write(tmp_path / "playlist.txt", "media\n"), loop=False)
    catalog.load()

    picks = [catalog.next() for _ in range(4)]

    assert [Path(p.source).name if p else None for p in picks] == ["a.mp4", "b.mp4", "c.mp4", None]


# ---- reload_if_changed --------------------------------------------------------------------


@pytest.fixture
def loaded(tmp_path: Path, media: Path) -> Catalog:
    catalog = Catalog(write(tmp_path / "playlist.txt", "media/a.mp4\nmedia/b.mp4\n"))
    catalog.load()
    return catalog


def test_reload_without_a_change_returns_false(loaded: Catalog) -> None:
    assert loaded.reload_if_changed() is False
    assert loaded.reload_if_changed() is False
    assert sources(loaded) == ["a.mp4", "b.mp4"]


def test_reload_after_an_edit_takes_the_new_items(loaded: Catalog) -> None:
    write(loaded.path, "media/c.mp4\nmedia/a.mp4\nmedia/c.mp4\n")  # a different size

    assert loaded.reload_if_changed() is True
    assert sources(loaded) == ["c.mp4", "a.mp4", "c.mp4"]
    assert loaded.reload_if_changed() is False


@pytest.mark.parametrize(
    "text", ["", "# everything commented out\n", "media/zzz.mp4\nftp://example.org/x\n"]
)
def test_an_edit_without_valid_entries_keeps_the_previous_items(
    loaded: Catalog, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    write(loaded.path, text)

    assert loaded.reload_if_changed() is False

    assert sources(loaded) == ["a.mp4", "b.mp4"]
    (error,) = errors(caplog)
    assert "keeping the previous playlist (2 items)" in error.getMessage()
    assert str(loaded.path) in error.getMessage()


def test_a_deleted_playlist_keeps_the_previous_items_until_it_comes_back(
    loaded: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    loaded.path.unlink()

    assert loaded.reload_if_changed() is False
    assert loaded.reload_if_changed() is False  # refused once, not logged on every check

    assert sources(loaded) == ["a.mp4", "b.mp4"]
    (error,) = errors(caplog)
    assert "not found" in error.getMessage()

    write(loaded.path, "media/c.mp4\n")
    assert loaded.reload_if_changed() is True
    assert sources(loaded) == ["c.mp4"]


def test_an_edit_that_leaves_only_empty_directories_keeps_the_previous_items(
    loaded: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    (loaded.path.parent / "empty").mkdir()
    write(loaded.path, "empty/\n")

    assert loaded.reload_if_changed() is False

    assert sources(loaded) == ["a.mp4", "b.mp4"]
    (error,) = errors(caplog)
    assert "no media files" in error.getMessage()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope.mp4\nftp://x/y\n", ["all 2 entries are invalid (line 1: ", "line 2: "]),
        ("# only a comment\n\n", ["it has no entries; add at least one"]),
    ],
)
def test_an_unplayable_playlist_says_why_in_its_own_message(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text(text)

    with pytest.raises(PlaylistError) as caught:
        Catalog(playlist).load()

    message = str(caught.value)
    for word in words:
        assert word in message
    assert "WARNING lines" not in message  # `tgstream check` shows none
