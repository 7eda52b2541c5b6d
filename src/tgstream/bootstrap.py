"""The composition root: settings in, a ready :class:`~tgstream.engine.Engine` out.

Nothing here runs at import time; tests build engines with their own outputs and fakes.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

from opskit.procs import Children
from tgstream.adapters.ffmpeg import check_ffmpeg_args
from tgstream.adapters.preview import Preview
from tgstream.adapters.probe import Prober
from tgstream.adapters.publisher import Publisher
from tgstream.adapters.resolver import Resolver
from tgstream.catalog import Catalog
from tgstream.config import Settings
from tgstream.engine import Engine, EngineOptions
from tgstream.errors import ConfigError, ToolError
from tgstream.ffargs import FfmpegArgs
from tgstream.ports import EngineEvents, Output

__all__ = ["Runtime", "build", "require_tools", "resolve_ffmpeg_args"]

log = logging.getLogger(__name__)

REQUIRED_TOOLS = ("ffmpeg", "ffprobe")


@dataclass
class Runtime:
    engine: Engine
    output: Output
    catalog: Catalog
    ffargs: FfmpegArgs


def require_tools() -> None:
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise ToolError(
            f"{' and '.join(missing)} not found on PATH; install with "
            "`apt-get install ffmpeg` (or run `make run`, which does it)"
        )


async def resolve_ffmpeg_args(settings: Settings, children: Children) -> FfmpegArgs:
    """Validated FFMPEG_ARGS; a refused value logs one WARNING and falls back to the preset."""
    ffargs = await check_ffmpeg_args(settings.FFMPEG_ARGS, settings.quality, children)
    if ffargs.rejected:
        log.warning(
            "FFMPEG_ARGS ignored, using the %s preset: %s", settings.VIDEO_QUALITY, ffargs.rejected
        )
    elif ffargs.custom:
        log.info("FFMPEG_ARGS in force: %s", " ".join(ffargs.args))
    return ffargs


def build_output(settings: Settings, children: Children, events: EngineEvents | None) -> Output:
    kind = settings.output
    if kind == "preview":
        return Preview(children, settings.PREVIEW_HOST, settings.PREVIEW_PORT, events)
    if kind == "rtmp":
        assert settings.RTMP_URL is not None
        return Publisher(children, "rtmp", settings.RTMP_URL.get_secret_value(), events)
    # pyrogram is heavy and sets an event loop at import: only the telegram output loads it.
    from tgstream.adapters.tgcalls import build_telegram_output  # noqa: PLC0415

    return build_telegram_output(settings, events)


async def build(
    settings: Settings,
    children: Children,
    events: EngineEvents | None = None,
    output: Output | None = None,
) -> Runtime:
    require_tools()
    if settings.output == "rtmp" and settings.RTMP_URL is None:
        raise ConfigError("OUTPUT=rtmp needs RTMP_URL")
    ffargs = await resolve_ffmpeg_args(settings, children)
    catalog = Catalog(settings.PLAYLIST_FILE, loop=settings.LOOP, shuffle=settings.SHUFFLE)
    catalog.load()
    prober = Prober(children)
    resolver = Resolver(children, prober, settings.quality, timeout=settings.RESOLVE_TIMEOUT)
    output = output or build_output(settings, children, events)
    options = EngineOptions(settings.quality, ffargs, stall_timeout=settings.STALL_TIMEOUT)
    engine = Engine(catalog, resolver, prober, output, children, options, events)
    return Runtime(engine, output, catalog, ffargs)
