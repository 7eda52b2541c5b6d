"""The composition root: settings in, a ready :class:`~tgstream.engine.Engine` out.

Nothing here runs at import time; tests build engines with their own outputs and fakes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from opskit.procs import Children
from tgstream.adapters.ffmpeg import check_ffmpeg_args
from tgstream.adapters.preview import Preview
from tgstream.adapters.probe import Prober
from tgstream.adapters.publisher import Publisher
from tgstream.adapters.resolver import Resolver
from tgstream.adapters.spawner import FfmpegFeeds
from tgstream.callstate import CallEvents
from tgstream.catalog import Catalog
from tgstream.config import Settings, load_settings, read_env_file
from tgstream.engine import Engine, EngineOptions
from tgstream.errors import ConfigError, ToolError
from tgstream.ffargs import FfmpegArgs
from tgstream.ports import EngineEvents, Output
from tgstream.session import Alerter, SessionEvents, SessionVerifier
from tgstream.supervisor import CallWatch, Resume, Supervisor
from tgstream.tracks import PlaylistTracks

__all__ = [
    "Parts",
    "Runtime",
    "build",
    "build_parts",
    "build_supervisor",
    "reload_settings",
    "require_tools",
    "resolve_ffmpeg_args",
]

log = logging.getLogger(__name__)

REQUIRED_TOOLS = ("ffmpeg", "ffprobe")
_CREDENTIALS = ("API_ID", "API_HASH", "SESSION_STRING")


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
    """Validated FFMPEG_ARGS; a refused value logs one WARNING and falls back to the preset, and
    options without effect on the chosen output (``telegram``) log one WARNING saying so."""
    ffargs = await check_ffmpeg_args(
        settings.FFMPEG_ARGS, settings.quality, children, settings.output
    )
    if ffargs.rejected:
        log.warning(
            "FFMPEG_ARGS ignored, using the %s preset: %s", settings.VIDEO_QUALITY, ffargs.rejected
        )
    elif ffargs.note:
        log.warning("%s", ffargs.note)
    elif ffargs.custom:
        log.info("FFMPEG_ARGS in force: %s", " ".join(ffargs.args))
    return ffargs


def build_output(
    settings: Settings,
    children: Children,
    events: EngineEvents | None,
    on_session_dead: Callable[[str], None] | None = None,
    call_events: CallEvents | None = None,
) -> Output:
    kind = settings.output
    if kind == "preview":
        return Preview(children, settings.PREVIEW_HOST, settings.PREVIEW_PORT, events)
    if kind == "rtmp":
        assert settings.RTMP_URL is not None
        return Publisher(children, "rtmp", settings.RTMP_URL.get_secret_value(), events)
    # pyrogram is heavy and sets an event loop at import: only the telegram output loads it.
    from tgstream.adapters.tgcalls import build_telegram_output  # noqa: PLC0415

    return build_telegram_output(settings, events, on_session_dead, call_events)


@dataclass
class Parts:
    """What every engine of one process shares: the catalog keeps the playlist position."""

    catalog: Catalog
    resolver: Resolver
    prober: Prober
    options: EngineOptions
    ffargs: FfmpegArgs
    children: Children
    events: EngineEvents | None
    tracks: PlaylistTracks

    def engine(self, output: Output, resume: Resume | None = None) -> Engine:
        """A new engine on ``output``: the shared tracks, its own ffmpeg feeds."""
        on_hole = self.events.source_hole if self.events is not None else None
        feeds = FfmpegFeeds(self.options.quality, self.options.ffargs, output.recipe, on_hole)
        self.tracks.scan_next_with_probe = output.recipe == "ts"
        return Engine(
            self.tracks,
            output,
            feeds,
            self.children,
            self.options,
            self.events,
            resume=resume,
        )


async def build_parts(
    settings: Settings, children: Children, events: EngineEvents | None = None
) -> Parts:
    require_tools()
    if settings.output == "rtmp" and settings.RTMP_URL is None:
        raise ConfigError("OUTPUT=rtmp needs RTMP_URL")
    ffargs = await resolve_ffmpeg_args(settings, children)
    catalog = Catalog(settings.PLAYLIST_FILE, loop=settings.LOOP, shuffle=settings.SHUFFLE)
    catalog.load()
    prober = Prober(children)
    resolver = Resolver(children, prober, settings.quality, timeout=settings.RESOLVE_TIMEOUT)
    options = EngineOptions(settings.quality, ffargs, stall_timeout=settings.STALL_TIMEOUT)
    tracks = PlaylistTracks(catalog, resolver, prober, settings.quality, ffargs)
    return Parts(catalog, resolver, prober, options, ffargs, children, events, tracks)


async def build(
    settings: Settings,
    children: Children,
    events: EngineEvents | None = None,
    output: Output | None = None,
) -> Runtime:
    """One engine on one output (benchmarks and tests); ``tgstream run`` uses the supervisor."""
    parts = await build_parts(settings, children, events)
    output = output or build_output(settings, children, events)
    return Runtime(parts.engine(output), output, parts.catalog, parts.ffargs)


def reload_settings(env_file: Path | None) -> Settings:
    """Settings as ``.env`` says now, its credentials winning over the environment.

    Under systemd, ``EnvironmentFile=`` put the ``.env`` of the start into the environment,
    which pydantic-settings prefers; without this a regenerated session would never be seen
    before a restart.
    """
    if env_file is None or not env_file.exists():
        return load_settings(None)
    in_file = read_env_file(env_file)
    fresh = {k: v for k in _CREDENTIALS if (v := in_file.get(k)) is not None}
    return load_settings(env_file, **fresh)


async def build_supervisor(
    settings: Settings,
    children: Children,
    *,
    env_file: Path | None,
    events: EngineEvents | None = None,
    session_events: SessionEvents | None = None,
    verifier: SessionVerifier | None = None,
    alerter: Alerter | None = None,
    regen: Callable[[], Awaitable[int]] | None = None,
    output_factory: Callable[[Settings, Callable[[str], None]], Output] | None = None,
    call_events: CallEvents | None = None,
) -> Supervisor:
    """The service of ``tgstream run``: the engine under the session watch.

    One set of :class:`Parts` (so the playlist position survives a pause), a new engine and
    output per session. Tests pass ``verifier`` and ``output_factory`` (fakes at the library
    boundary). The Telegram outputs report their call state to one :class:`CallWatch`, which
    passes it on to ``call_events`` (the metrics) and alerts the operator.
    """
    parts = await build_parts(settings, children, events)

    def make_engine(
        current: Settings, on_session_dead: Callable[[str], None], resume: Resume | None
    ) -> Engine:
        output = (
            output_factory(current, on_session_dead)
            if output_factory is not None
            else build_output(current, children, events, on_session_dead, calls)
        )
        return parts.engine(output, resume)

    if settings.output == "telegram" and verifier is None:
        from tgstream.adapters.telegram_session import PyrogramVerifier  # noqa: PLC0415

        verifier = PyrogramVerifier(timeout=settings.AUTH_TIMEOUT)
    if alerter is None and settings.ALERT_BOT_TOKEN is not None:
        assert settings.ALERT_CHAT_ID is not None
        from tgstream.adapters.alerts import BotAlerter  # noqa: PLC0415

        alerter = BotAlerter(
            settings.ALERT_BOT_TOKEN.get_secret_value(),
            settings.ALERT_CHAT_ID,
            api_url=settings.ALERT_API_URL,
            min_interval=settings.ALERT_MIN_INTERVAL,
        )
    calls = CallWatch(settings.CHAT_ID, alerter, call_events)

    return Supervisor(
        settings,
        make_engine,
        verifier=verifier,
        reload=lambda: reload_settings(env_file),
        alerter=alerter,
        events=session_events,
        regen=regen,
        calls=calls,
    )
