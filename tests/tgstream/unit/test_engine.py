"""The play loop's rules on fakes (``tests/tgstream/engine_fakes.py``): no ffmpeg, and a
virtual clock that drives every wait, so each broadcast of seconds or minutes takes
milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from tests.tgstream.engine_fakes import (
    End,
    FakeOutput,
    Media,
    Rig,
    Units,
    Wait,
    Written,
    now,
    run_virtual,
)
from tgstream.engine import MAX_RESUMES
from tgstream.errors import ExitCode, SourceError

LEAD = 0.5


def assert_spliced(output: FakeOutput) -> None:
    """Every unit starts exactly where the one before it ended: no hole, no overlap."""
    steps = [
        (i, a.label, b.label, b.unit.pts - (a.unit.pts + a.unit.duration))
        for i, (a, b) in enumerate(itertools.pairwise(output.written))
        if abs(b.unit.pts - (a.unit.pts + a.unit.duration)) > 1e-6
    ]
    assert not steps, f"holes or overlaps (unit, from, to, step): {steps[:5]}"


def assert_paced(output: FakeOutput) -> None:
    """No unit written more than the lead ahead of the first one's timeline."""
    first = output.written[0]
    early = [
        w for w in output.written if (w.at - first.at) < (w.unit.pts - first.unit.pts) - LEAD - 1e-6
    ]
    assert not early, f"{len(early)} units written more than {LEAD}s early: {early[:3]}"


def seconds(units: list[Written]) -> float:
    return sum(w.unit.duration for w in units)


def test_the_next_track_is_resolved_and_spawned_while_the_current_one_plays() -> None:
    async def main() -> Rig:
        rig = Rig(["a", "b"], {"b": Media(3.0, resolve_in=0.5)})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    (a,), (b,) = rig.feeds.of("a"), rig.feeds.of("b")
    first_a = rig.output.of("a")[0].at
    resolve_b = dict(rig.tracks.resolves)["b"]
    assert resolve_b - first_a < 0.1  # b's preparation starts as a starts
    assert b.feed.spawned_at is not None and a.feed.eof_at is not None
    assert b.feed.spawned_at < a.feed.eof_at - 2.0  # b waits, spawned, while a plays
    assert rig.output.runs() == ["a", "b"]
    assert seconds(rig.output.of("a")) == pytest.approx(3.0)
    assert seconds(rig.output.of("b")) == pytest.approx(3.0)
    assert_spliced(rig.output)
    assert_paced(rig.output)


def test_a_track_not_ready_in_time_is_covered_by_the_slate() -> None:
    async def main() -> Rig:
        rig = Rig(["a", "b"], {"b": Media(3.0, resolve_in=6.0)})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert rig.output.runs() == ["a", "slate", "b"]
    # a plays 3 s from the moment b starts resolving; b is ready 6 s after: ~3 s of slate.
    assert 2.4 <= seconds(rig.output.of("slate")) <= 3.6
    assert "slate" in [state for _, state, _ in rig.events.states]
    assert_spliced(rig.output)
    assert_paced(rig.output)


def test_a_failing_item_is_skipped_and_counted_without_a_gap() -> None:
    bad = SourceError("not_found", "bad: not found")

    async def main() -> Rig:
        rig = Rig(["a", "bad", "c"], {"bad": Media(error=bad)})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert rig.output.runs() == ["a", "c"]
    assert rig.events.failed == [("not_found", "bad: not found")]
    assert rig.engine.stats.failures == 1
    assert rig.feeds.of("bad") == []
    assert_spliced(rig.output)


def test_an_edited_playlist_takes_effect_at_the_next_track() -> None:
    async def main() -> Rig:
        rig = Rig(["a", "b"], {"a": Media(5.0)})

        async def edit() -> None:
            await asyncio.sleep(1.0)  # b is prepared and waiting by now
            assert rig.feeds.of("b"), "b should be prepared ahead"
            rig.tracks.edit(["a", "c", "d"])

        assert await rig.run(edit()) == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert rig.output.runs() == ["a", "c", "d"]
    assert seconds(rig.output.of("a")) == pytest.approx(5.0)  # a was not cut short
    (b,) = rig.feeds.of("b")
    assert b.feed.first_read_at is None  # the replaced track was never read...
    assert b.feed.closed_at is not None  # ...and its ffmpeg was stopped
    assert_spliced(rig.output)


def test_a_crashed_source_resumes_where_it_was() -> None:
    def crashing_once(start: float) -> list[Units | End]:
        if start == 0.0:
            return [Units(90), End(-9)]  # killed 3 s in
        return [Units(round((8.0 - start) * 30)), End(0)]

    async def main() -> Rig:
        rig = Rig(["a", "b"], {"a": Media(8.0)}, {"a": crashing_once})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert [s.start for s in rig.feeds.of("a")] == pytest.approx([0.0, 3.0])
    assert rig.events.restarts == 1
    assert rig.events.failed == []
    assert rig.output.runs() == ["a", "b"]
    assert seconds(rig.output.of("a")) == pytest.approx(8.0)  # nothing replayed, nothing lost
    assert_spliced(rig.output)


def test_a_source_that_keeps_crashing_is_given_up_after_max_resumes() -> None:
    async def main() -> Rig:
        rig = Rig(["a", "b"], {"a": Media(20.0)}, {"a": lambda start: [Units(30), End(1)]})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert len(rig.feeds.of("a")) == 1 + MAX_RESUMES
    assert rig.events.restarts == MAX_RESUMES
    assert [reason for reason, _ in rig.events.failed] == ["ffmpeg_exit"]
    assert "ffmpeg exited with code 1" in rig.events.failed[0][1]
    assert rig.output.runs() == ["a", "b"]
    assert seconds(rig.output.of("a")) == pytest.approx(1.0 + MAX_RESUMES)
    assert_spliced(rig.output)


def test_a_source_that_stalls_is_skipped_after_the_stall_timeout() -> None:
    async def main() -> Rig:
        rig = Rig(
            ["a", "b"],
            {"a": Media(20.0)},
            {"a": lambda start: [Units(60), Wait(3600.0)]},
            stall_timeout=4.0,
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert [reason for reason, _ in rig.events.failed] == ["stall"]
    assert rig.output.runs() == ["a", "slate", "b"]
    assert 3.5 <= seconds(rig.output.of("slate")) <= 4.5
    assert_spliced(rig.output)


def test_when_every_item_fails_the_slate_plays_through_a_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = SourceError("not_found", "gone")

    async def main() -> Rig:
        rig = Rig(["x", "y"], {"x": Media(error=gone), "y": Media(error=gone)}, loop=True)

        def rounds() -> int:
            return sum(1 for s, _ in rig.tracks.resolves if s == "x")

        assert await rig.run(rig.stop_when(lambda: rounds() >= 8)) == ExitCode.OK
        return rig

    with caplog.at_level(logging.ERROR, "tgstream.engine"):
        rig = run_virtual(main())
    times = [t for source, t in rig.tracks.resolves if source == "x"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([2, 4, 8, 16, 32, 60, 60], abs=0.1)
    retrying = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [m.split("retrying in ")[1].split("s;")[0] for m in retrying[:7]] == [
        "2",
        "4",
        "8",
        "16",
        "32",
        "60",
        "60",
    ]
    assert rig.output.runs() == ["slate"]  # ~3 minutes of slate, never dead air
    assert seconds(rig.output.written) >= 180
    assert_spliced(rig.output)


def test_with_loop_0_the_engine_ends_after_one_pass() -> None:
    async def main() -> tuple[Rig, float]:
        rig = Rig(["a", "b", "c"], loop=False)
        began = now()
        assert await rig.run() == ExitCode.OK
        return rig, now() - began

    rig, took = run_virtual(main())
    assert not rig.stop.is_set()  # it stopped on its own
    assert rig.events.started == ["a", "b", "c"]
    assert rig.output.runs() == ["a", "b", "c"]
    assert rig.output.closed
    # 9 s of media paced in (virtual) real time: the clock starts with the first frame, and
    # the last frame goes out when due, one frame (1/30 s) before the media's end.
    assert 9.0 - 1 / 30 - 1e-6 <= took <= 11.0


def test_each_track_starts_right_after_the_previous_one_ends() -> None:
    async def main() -> Rig:
        rig = Rig(["a", "b", "c"], {"c": Media(3.0, resolve_in=5.0)})
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert rig.output.runs() == ["a", "b", "slate", "c"]
    for before, after in itertools.pairwise(["a", "b", "slate", "c"]):
        last, first = rig.output.of(before)[-1].unit, rig.output.of(after)[0].unit
        assert first.pts == pytest.approx(last.pts + last.duration, abs=1e-9), (before, after)
    assert_spliced(rig.output)


# ---- live sources (issue 12, section 4) ------------------------------------------------------


def test_a_live_source_is_resolved_ahead_but_starts_reading_only_when_due() -> None:
    async def main() -> Rig:
        rig = Rig(
            ["a", "live", "b"],
            {"a": Media(5.0), "live": Media(None)},
            {"live": lambda start: [Wait(0.2), Units(90), End(0)]},
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    (a,), (live,) = rig.feeds.of("a"), rig.feeds.of("live")
    assert a.feed.eof_at is not None and live.feed.spawned_at is not None
    assert dict(rig.tracks.resolves)["live"] < a.feed.eof_at - 4.0  # resolved ahead
    assert live.feed.spawned_at >= a.feed.eof_at  # its ffmpeg started when due, not before
    # A first read within the output's buffer needs no slate.
    assert rig.output.runs() == ["a", "live", "b"]
    assert_spliced(rig.output)


def test_a_live_source_slow_to_open_is_covered_by_the_slate() -> None:
    async def main() -> Rig:
        rig = Rig(
            ["a", "live"],
            {"live": Media(None)},
            {"live": lambda start: [Wait(1.5), Units(60), End(0)]},
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    assert rig.output.runs() == ["a", "slate", "live"]
    assert seconds(rig.output.of("slate")) <= 1.5 + 2 / 30  # the open time, no more
    assert_spliced(rig.output)


# ---- gaps inside a track (issue 12, section 3) -----------------------------------------------

GOP = 60
"""Frames between keyframes of the MPEG-TS-like sources below (2 s, as our encodes)."""


def test_a_short_gap_inside_a_track_is_covered_by_sound_and_loses_no_frame() -> None:
    # 10 frames of a, then its source has nothing for 0.8 s (an http source slow to start; the
    # first 0.5 s went out at once): the slate's picture would make a resume only on its next
    # keyframe (frame 60, 50 lost).
    async def main() -> Rig:
        rig = Rig(
            ["a", "b"],
            {"a": Media(3.0)},
            {"a": lambda start: [Units(10), Wait(0.8), Units(80), End(0)]},
            gops={"a": GOP, "b": GOP},
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    (a,) = rig.feeds.of("a")
    assert a.feed.dropped == 0
    assert len(rig.output.of("a")) == 90  # every frame of a, none lost
    assert rig.output.runs() == ["a", "slate", "a", "b"]
    slate = rig.output.of("slate")
    assert slate and not any(w.picture for w in slate)  # the picture held; silence filled in
    assert 0.3 <= seconds(slate) <= 0.6
    assert_spliced(rig.output)
    assert_paced(rig.output)


def test_a_long_gap_inside_a_track_shows_the_slate_then_resumes_on_a_keyframe() -> None:
    async def main() -> Rig:
        rig = Rig(
            ["a", "b"],
            {"a": Media(4.0)},
            {"a": lambda start: [Units(10), Wait(3.0), Units(110), End(0)]},
            gops={"a": GOP},
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    (a,) = rig.feeds.of("a")
    slate = rig.output.of("slate")
    held = [w for w in slate if not w.picture]
    shown = [w for w in slate if w.picture]
    # The first hold_picture (1 s) of the gap is sound alone; then the slate's picture.
    assert seconds(held) == pytest.approx(1.0, abs=2 / 30)
    assert shown and all(not w.picture for w in slate[: len(held)])
    assert a.feed.dropped == GOP - 10  # after another picture, a resumes on its keyframe
    assert len(rig.output.of("a")) == 120 - a.feed.dropped
    assert rig.output.runs() == ["a", "slate", "a", "b"]
    assert_spliced(rig.output)


def test_a_late_first_frame_shows_the_slate_picture_at_once() -> None:
    # Before a track's first frame nothing of it is lost to a keyframe: no sound-only phase.
    async def main() -> Rig:
        rig = Rig(
            ["a", "b"],
            {"b": Media(3.0)},
            {"b": lambda start: [Wait(1.5), Units(90), End(0)]},
            gops={"a": GOP, "b": GOP},
        )
        assert await rig.run() == ExitCode.OK
        return rig

    rig = run_virtual(main())
    slate = rig.output.of("slate")
    assert slate and all(w.picture for w in slate)
    assert len(rig.output.of("b")) == 90
    assert_spliced(rig.output)
