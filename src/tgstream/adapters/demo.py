"""Generated media (ffmpeg lavfi ``testsrc2`` + ``sine``): the demo playlist, tests, benchmarks.

>>> clip_argv(Path("a.mp4"), seconds=2, freq=440)[:4]
['ffmpeg', '-nostdin', '-hide_banner', '-loglevel']
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["clip_argv", "make_clip", "make_demo"]


def clip_argv(
    path: Path,
    seconds: float,
    freq: int = 440,
    size: str = "1280x720",
    fps: int = 30,
    color: str | None = None,
    vcodec: str = "libx264",
    acodec: str = "aac",
    audio: bool = True,
    video: bool = True,
    noise: bool = False,
    video_kbps: int | None = None,
) -> list[str]:
    """A clip with a keyframe every 2 s. ``color`` replaces the test pattern with a solid colour
    (tests recognise tracks by it); ``noise`` adds grain so it has a realistic bitrate;
    ``video_kbps`` encodes like a real upload (veryfast, that bitrate) instead of ultrafast."""
    src = f"color=c={color}:s={size}:r={fps}" if color else f"testsrc2=s={size}:r={fps}"
    grain = ",noise=alls=12:allf=t" if noise else ""
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    maps: list[str] = []
    if video:
        argv += ["-f", "lavfi", "-i", f"{src}:d={seconds}{grain}"]
        maps += [
            "-map",
            "0:v",
            "-c:v",
            vcodec,
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(fps * 2),
            "-keyint_min",
            str(fps * 2),
            "-sc_threshold",
            "0",
        ]
        if video_kbps:
            k = video_kbps
            maps += [
                "-preset",
                "veryfast",
                "-b:v",
                f"{k}k",
                "-maxrate",
                f"{k}k",
                "-bufsize",
                f"{2 * k}k",
            ]
        else:
            maps += ["-preset", "ultrafast"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=f={freq}:r=48000:d={seconds}"]
        maps += ["-map", f"{1 if video else 0}:a", "-c:a", acodec, "-ac", "2"]
    return [*argv, *maps, str(path)]


def make_clip(path: Path, seconds: float, **kwargs: object) -> Path:
    subprocess.run(clip_argv(path, seconds, **kwargs), check=True, timeout=120)  # type: ignore[arg-type]
    return path


def make_demo(directory: Path, clips: int = 3, seconds: float = 10.0) -> Path:
    """Write ``clips`` demo clips and a ``playlist.txt`` naming them; returns the playlist."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "playlist.txt"
    names = []
    for n in range(clips):
        clip = directory / f"demo-{n + 1}.mp4"
        if not clip.exists():
            make_clip(clip, seconds, freq=330 + 110 * n)
        names.append(clip.name)
    playlist.write_text("# tgstream demo playlist (generated)\n" + "\n".join(names) + "\n")
    return playlist
