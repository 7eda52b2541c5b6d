"""Playlist parsing, expansion into items, and the play order (``Rotation``)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from tgstream.domain.playlist import Entry, Item, Rotation, expand, parse_playlist


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def items_of(names: str, start_line: int = 1) -> list[Item]:
    """One item per character, on consecutive lines: ``items_of("abc")``."""
    return [Item(f"{n}#1", n, "file", line) for line, n in enumerate(names, start=start_line)]


def play(rotation: Rotation, items: Sequence[Item], count: int) -> list[str | None]:
    picks = [rotation.next(items) for _ in range(count)]
    return [p.source if p else None for p in picks]


def play_looping(rotation: Rotation, items: Sequence[Item], count: int) -> list[str]:
    picks = play(rotation, items, count)
    sources = [p for p in picks if p is not None]
    assert sources == picks, "a looping rotation never runs dry"
    return sources


# ---- parse_playlist ---------------------------------------------------------------------


def test_comments_and_blank_lines_are_skipped_but_hashes_inside_entries_stay(
    tmp_path: Path,
) -> None:
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b#2.mp4")
    text = (
        "# a full-line comment\n"
        "\n"
        "   \n"
        "a.mp4   # a trailing comment\n"
        "    # an indented comment\n"
        "b#2.mp4\n"
        "https://example.org/v.mp4#t=10\n"
    )

    parsed = parse_playlist(text, tmp_path)

    assert parsed.errors == ()
    assert [(e.line, e.text, e.kind) for e in parsed.entries] == [
        (4, "a.mp4", "file"),
        (6, "b#2.mp4", "file"),
        (7, "https://example.org/v.mp4#t=10", "url"),
    ]


def test_relative_paths_resolve_against_the_base_dir(tmp_path: Path) -> None:
    clip = touch(tmp_path / "sub" / "clip.mkv")

    (entry,) = parse_playlist("sub/clip.mkv\n", tmp_path).entries

    assert entry == Entry(1, "sub/clip.mkv", "file", str(clip))


def test_absolute_paths_ignore_the_base_dir(tmp_path: Path) -> None:
    clip = touch(tmp_path / "clip.mp4")

    (entry,) = parse_playlist(f"{clip}\n", tmp_path / "elsewhere").entries

    assert entry.target == str(clip)


def test_tilde_expands_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    clip = touch(home / "Videos" / "x.mp4")
    monkeypatch.setenv("HOME", str(home))

    (entry,) = parse_playlist("~/Videos/x.mp4", tmp_path / "base").entries

    assert (entry.kind, entry.target) == ("file", str(clip))


def test_file_url_is_a_local_file_with_percent_escapes_decoded(tmp_path: Path) -> None:
    clip = touch(tmp_path / "my clip.mp4")

    (entry,) = parse_playlist(f"file://{tmp_path}/my%20clip.mp4", Path("/")).entries

    assert (entry.kind, entry.target) == ("file", str(clip))


def test_directory_entry(tmp_path: Path) -> None:
    (tmp_path / "shows").mkdir()

    (entry,) = parse_playlist("shows/\n", tmp_path).entries

    assert (entry.kind, entry.target) == ("dir", str(tmp_path / "shows"))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("http://example.org/a.mp4", "url"),
        ("https://www.youtube.com/watch?v=abc", "url"),
        ("HTTPS://EXAMPLE.ORG/A.MP4", "url"),
        ("rtmp://live.example.org/app/key", "stream"),
        ("rtmps://live.example.org:443/app/key", "stream"),
        ("rtsp://10.0.0.2:554/cam", "stream"),
        ("srt://example.org:9000?mode=caller", "stream"),
        ("udp://239.0.0.1:1234", "stream"),
    ],
)
def test_urls_are_classified_by_scheme_and_kept_verbatim(text: str, kind: str) -> None:
    (entry,) = parse_playlist(text, Path("/nonexistent")).entries

    assert (entry.kind, entry.target) == (kind, text)


@pytest.mark.parametrize("text", ["https:///a.mp4", "rtmp:///app/key"])
def test_url_without_host_is_an_error(text: str) -> None:
    parsed = parse_playlist(text, Path("/"))

    assert parsed.entries == ()
    assert [(e.line, e.reason) for e in parsed.errors] == [(1, "URL has no host")]


@pytest.mark.parametrize("text", ["ftp://example.org/a.mp4", "sftp://h/a.mp4", "gopher://h/x"])
def test_unsupported_scheme_is_a_line_error(text: str) -> None:
    parsed = parse_playlist(f"# header\n\n{text}\n", Path("/"))

    assert parsed.entries == ()
    (error,) = parsed.errors
    assert (error.line, error.text) == (3, text)
    scheme = text.split(":", 1)[0]
    assert error.reason.startswith(f"unsupported URL scheme {scheme!r}")
    assert str(error).startswith("line 3: unsupported URL scheme")


def test_missing_file_is_a_line_error_naming_the_resolved_path(tmp_path: Path) -> None:
    touch(tmp_path / "here.mp4")

    parsed = parse_playlist("here.mp4\nmissing.mp4\n", tmp_path)

    assert [e.text for e in parsed.entries] == ["here.mp4"]
    (error,) = parsed.errors
    assert error.line == 2
    assert error.reason == f"file not found ({tmp_path / 'missing.mp4'})"


# ---- expand -----------------------------------------------------------------------------


def test_directory_lists_media_files_only_in_natural_order(tmp_path: Path) -> None:
    shows = tmp_path / "shows"
    for name in ("10.mp4", "2.mp4", "1.MKV", "Episode 9.mp3", "episode 10.webm"):
        touch(shows / name)
    for name in (".hidden.mp4", "notes.txt", "cover.jpg", "nosuffix"):
        touch(shows / name)
    (shows / "folder.mp4").mkdir()
    entries = parse_playlist("shows\n", tmp_path).entries

    items = expand(entries)

    assert [Path(i.source).name for i in items] == [
        "1.MKV",
        "2.mp4",
        "10.mp4",
        "Episode 9.mp3",
        "episode 10.webm",
    ]
    assert {(i.kind, i.line) for i in items} == {("file", 1)}


def test_duplicates_get_distinct_keys(tmp_path: Path) -> None:
    clip = touch(tmp_path / "d" / "a.mp4")
    entries = parse_playlist(f"d/a.mp4\nd\n{clip}\n", tmp_path).entries

    items = expand(entries)

    assert [i.source for i in items] == [str(clip)] * 3
    assert [i.key for i in items] == [f"{clip}#1", f"{clip}#2", f"{clip}#3"]
    assert [i.line for i in items] == [1, 2, 3]


def test_url_expansion_replaces_the_entry_in_place(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    playlist_url = "https://example.org/playlist?list=1"
    entries = parse_playlist(f"a.mp4\n{playlist_url}\nhttps://example.org/single\n", tmp_path)
    expansions = {
        playlist_url: [("https://example.org/v1", "First"), ("https://example.org/v2", "")]
    }

    items = expand(entries.entries, expansions)

    assert [(i.source, i.kind, i.line, i.display) for i in items] == [
        (str(tmp_path / "a.mp4"), "file", 1, str(tmp_path / "a.mp4")),
        ("https://example.org/v1", "url", 2, "First"),
        ("https://example.org/v2", "url", 2, "https://example.org/v2"),
        ("https://example.org/single", "url", 3, "https://example.org/single"),
    ]


def test_expand_uses_the_injected_directory_lister() -> None:
    listed: list[Path] = []

    def fake_list(directory: Path) -> list[Path]:
        listed.append(directory)
        return [directory / "x.mp4", directory / "y.mp4"]

    items = expand([Entry(5, "d", "dir", "/m/d")], list_dir=fake_list)

    assert listed == [Path("/m/d")]
    assert [(i.key, i.line) for i in items] == [("/m/d/x.mp4#1", 5), ("/m/d/y.mp4#1", 5)]


# ---- Rotation: order ----------------------------------------------------------------------


def test_in_order_loops_over_cycles() -> None:
    rotation = Rotation()

    assert play(rotation, items_of("abc"), 7) == list("abcabca")
    assert rotation.cycles == 2


def test_loop_off_returns_none_after_one_cycle() -> None:
    rotation = Rotation(loop=False)

    assert play(rotation, items_of("abc"), 5) == ["a", "b", "c", None, None]


def test_empty_list_gives_none() -> None:
    assert Rotation().next([]) is None


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shuffle_plays_each_item_once_per_cycle_without_repeats_at_the_boundary(
    count: int,
) -> None:
    items = items_of("abcdefg"[:count])
    rotation = Rotation(shuffle=True, rng=random.Random(1234))
    cycles = 300

    sequence = play_looping(rotation, items, count * cycles)

    orders = {tuple(sequence[n : n + count]) for n in range(0, len(sequence), count)}
    for n in range(0, len(sequence), count):
        assert sorted(sequence[n : n + count]) == sorted(i.source for i in items)
    assert all(a != b for a, b in itertools.pairwise(sequence))
    if count > 2:
        assert len(orders) > 1, "shuffle should not always give the same order"


def test_shuffle_is_reproducible_with_a_seeded_rng() -> None:
    items = items_of("abcdef")
    first = play_looping(Rotation(shuffle=True, rng=random.Random(99)), items, 30)
    second = play_looping(Rotation(shuffle=True, rng=random.Random(99)), items, 30)
    other_seed = play_looping(Rotation(shuffle=True, rng=random.Random(100)), items, 30)

    assert first == second
    assert first != other_seed


# ---- Rotation: hot reload -----------------------------------------------------------------


def test_after_an_edit_the_next_pick_follows_the_last_item_in_the_new_list() -> None:
    rotation = Rotation()
    old = items_of("abc")
    assert play(rotation, old, 1) == ["a"]
    new = items_of("xcadb")  # a moved to line 3; x and d are new; b moved after d

    assert play(rotation, new, 2) == ["d", "b"]


def test_an_item_inserted_after_the_last_played_one_plays_next() -> None:
    rotation = Rotation()
    assert play(rotation, items_of("ab"), 1) == ["a"]

    new = [Item("a#1", "a", "file", 1), Item("n#1", "n", "file", 2), Item("b#1", "b", "file", 3)]

    assert play(rotation, new, 3) == ["n", "b", "a"]


def test_when_the_last_item_was_removed_the_order_continues_from_its_line() -> None:
    rotation = Rotation()
    assert play(rotation, items_of("abcd"), 2) == ["a", "b"]

    # Line 2 (b) was deleted: c and d moved up one line each.
    edited = [Item("a#1", "a", "file", 1), Item("c#1", "c", "file", 2), Item("d#1", "d", "file", 3)]

    assert play(rotation, edited, 3) == ["c", "d", "a"]


def test_an_expanded_url_plays_from_its_first_item() -> None:
    url = "https://example.org/list"
    entries = [
        Entry(1, "a", "file", "/a"),
        Entry(2, url, "url", url),
        Entry(3, "z", "file", "/z"),
    ]
    rotation = Rotation(loop=False)
    assert play(rotation, expand(entries), 2) == ["/a", url]

    expanded = expand(entries, {url: [("https://v/1", "one"), ("https://v/2", "two")]})

    assert play(rotation, expanded, 4) == ["https://v/1", "https://v/2", "/z", None]


# ---- Rotation: rewind ---------------------------------------------------------------------


def test_rewind_puts_the_item_back_after_the_previous_one() -> None:
    rotation = Rotation(loop=False)
    items = items_of("abc")
    a, b = rotation.next(items), rotation.next(items)
    assert (a, b) == (items[0], items[1])

    rotation.rewind(items[1])

    assert play(rotation, items, 3) == ["b", "c", None]


def test_rewind_in_shuffle_mode_keeps_the_item_in_this_cycle() -> None:
    items = items_of("abcde")
    rotation = Rotation(shuffle=True, loop=False, rng=random.Random(5))
    first, second = rotation.next(items), rotation.next(items)
    assert first is not None
    assert second is not None

    rotation.rewind(second)

    rest = play(rotation, items, 5)
    assert sorted(rest[:4]) == sorted({"a", "b", "c", "d", "e"} - {first.source})  # type: ignore[type-var]
    assert rest[4] is None


def test_rewinding_the_very_first_pick_plays_it_again() -> None:
    rotation = Rotation(loop=False)
    items = items_of("abc")
    first = rotation.next(items)
    assert first is items[0]

    rotation.rewind(first)  # the engine drops the first prepared track before anything played

    assert play(rotation, items, 4) == ["a", "b", "c", None]
