from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tgstream.harness import Nginx, http_server, nginx_rtmp
from tgstream.adapters.demo import make_clip


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated clips: solid colours (tracks are recognised by colour at the reader),
    720p30 H.264/AAC with 2 s GOPs so they fit the 720p preset and are remuxed, plus a
    360p one that must be transcoded and a test pattern."""
    root = tmp_path_factory.mktemp("media")
    for n, color in enumerate(("red", "green", "blue", "white")):
        make_clip(root / f"{color}.mp4", 3, color=color, freq=300 + 100 * n)
    make_clip(root / "blue-360p.mp4", 3, color="blue", size="640x360", freq=700)
    make_clip(root / "pattern.mp4", 3, freq=800)
    make_clip(root / "long-green.mp4", 8, color="green", freq=500, noise=True)
    return root


@pytest.fixture(scope="session")
def media_url(media: Path) -> Iterator[str]:
    with http_server(media) as url:
        yield url


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[Nginx]:
    with nginx_rtmp(tmp_path / "nginx") as server:
        yield server
