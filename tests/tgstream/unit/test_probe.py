"""ffprobe's failures as an operator needs them: a missing file, a corrupt one, a good one."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opskit.procs import Children
from tgstream.adapters.probe import Prober
from tgstream.errors import SOURCE_FAILURE_REASONS, SourceError

pytestmark = [
    pytest.mark.ffmpeg,
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe"),
]


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    children = Children()
    yield Prober(children)
    await children.close()


async def failure(prober: Prober, path: Path) -> SourceError:
    with pytest.raises(SourceError) as caught:
        await prober.probe(str(path))
    return caught.value


async def test_an_mp4_cut_short_is_corrupt_not_missing(
    prober: Prober, media: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((media / "red.mp4").read_bytes()[:3000])  # the moov atom is lost

    error = await failure(prober, cut)

    assert error.reason == "corrupt"
    assert "corrupt or not a media file" in str(error)
    assert "not found (" not in str(error)


async def test_bytes_that_are_no_media_are_corrupt(prober: Prober, tmp_path: Path) -> None:
    noise = tmp_path / "noise.mp4"
    # Not random bytes: those now and then look like an MP3 frame to ffprobe's detection.
    noise.write_bytes(b"this is a text file named like a video\n" * 500)

    assert (await failure(prober, noise)).reason == "corrupt"


async def test_a_missing_file_is_not_found(prober: Prober, tmp_path: Path) -> None:
    error = await failure(prober, tmp_path / "gone.mp4")

    assert error.reason == "not_found"
    assert "fix or remove the entry" in str(error)


async def test_the_good_file_still_probes(prober: Prober, media: Path) -> None:
    info = await prober.probe(str(media / "red.mp4"))

    assert info.has_video and info.has_audio


def test_corrupt_is_a_bounded_failure_reason() -> None:
    assert "corrupt" in SOURCE_FAILURE_REASONS
