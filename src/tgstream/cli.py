"""``tgstream``: run the broadcast, check a host before going live, inspect the playlist.

Entry points only translate: they load settings, call one piece of the service, and map its
errors to the exit codes of :class:`tgstream.errors.ExitCode`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from opskit.lifecycle import run_until_stopped
from opskit.logs import setup_logging
from opskit.procs import Children
from tgstream import __version__
from tgstream.adapters.demo import make_demo
from tgstream.adapters.ffmpeg import plan_remux
from tgstream.adapters.probe import Prober
from tgstream.adapters.resolver import Expansion, Resolver
from tgstream.bootstrap import require_tools, resolve_ffmpeg_args
from tgstream.catalog import Catalog
from tgstream.config import DEFAULT_ENV_FILE, Settings, load_settings, settings_file
from tgstream.domain.track import Track
from tgstream.errors import ExitCode, SourceError, TgstreamError
from tgstream.ffargs import FfmpegArgs
from tgstream.service import serve
from tgstream.session_cli import session_app

__all__ = ["app", "main"]

log = logging.getLogger("tgstream.cli")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="tgstream: a 24/7 broadcaster of a playlist into a Telegram video chat, RTMP or a "
    "local preview.",
    epilog="Exit codes: 0 ok; 1 check failed, a playlist item cannot play, or session invalid; "
    "2 bad configuration (a key, a .env line, a missing --env-file); 3 bad playlist; "
    "4 ffmpeg/ffprobe/yt-dlp or the tgstream extra missing; 5 output cannot be opened.",
)
app.add_typer(session_app, name="session")
EnvFile = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="Settings file (keys as in .env.template; the environment wins over it). "
        "Default: ./.env when it exists; a file named here must exist.",
        show_default=False,
    ),
]
err_console = Console(stderr=True)


def _settings(env_file: Path | None) -> Settings:
    return load_settings(settings_file(env_file))


def _guard(fn: Callable[[], int]) -> None:
    """Run a command body; expected failures print one clear message, never a traceback."""
    try:
        code = fn()
    except TgstreamError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        code = exc.exit_code
    raise typer.Exit(int(code))


@app.command()
def run(env_file: EnvFile = None) -> None:
    """Run the broadcast until SIGTERM/SIGINT (or, with LOOP=0, until the playlist ends)."""

    def body() -> int:
        settings = _settings(env_file)
        setup_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
        path = env_file or DEFAULT_ENV_FILE
        return run_until_stopped(lambda stop: serve(settings, path, stop))

    _guard(body)


@dataclass
class _Row:
    name: str
    ok: bool
    detail: str


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SourceError("resolve", f"not usable: {exc}") from None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "?"


async def _resolve_all(
    catalog: Catalog, resolver: Resolver, show_progress: bool
) -> list[tuple[str, Track | SourceError]]:
    results: list[tuple[str, Track | SourceError]] = []
    pending = list(catalog.items)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("resolving playlist", total=len(pending))
        while pending:
            item = pending.pop(0)
            progress.update(task, description=f"resolving {item.display[:50]}")
            try:
                resolved = await resolver.resolve(item)
            except SourceError as exc:
                results.append((f"line {item.line}: {item.display}", exc))
            else:
                if isinstance(resolved, Expansion):
                    catalog.add_expansion(resolved.source, resolved.items)
                    new = [i for i in catalog.items if i.line == item.line]
                    pending[0:0] = new
                    progress.update(task, total=progress.tasks[0].total + len(new))  # type: ignore[operator]
                else:
                    results.append((f"line {item.line}: {resolved.display}", resolved))
            progress.advance(task)
    return results


def _output_reachable(settings: Settings) -> _Row:
    kind = settings.output
    if kind == "preview":
        with socket.socket() as sock:
            try:
                sock.bind((settings.PREVIEW_HOST, settings.PREVIEW_PORT))
            except OSError as exc:
                return _Row(
                    "output preview",
                    False,
                    f"{settings.PREVIEW_HOST}:"
                    f"{settings.PREVIEW_PORT} unavailable ({exc.strerror}); set "
                    "PREVIEW_PORT",
                )
        return _Row(
            "output preview",
            True,
            f"http://{settings.PREVIEW_HOST}:{settings.PREVIEW_PORT}/ is free",
        )
    if kind == "rtmp":
        assert settings.RTMP_URL is not None
        parts = urlsplit(settings.RTMP_URL.get_secret_value())
        port = parts.port or (443 if parts.scheme == "rtmps" else 1935)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=5).close()
        except OSError as exc:
            return _Row(
                "output rtmp",
                False,
                f"{parts.hostname}:{port} unreachable ({exc}); check RTMP_URL and the network",
            )
        return _Row("output rtmp", True, f"{parts.hostname}:{port} accepts connections")
    from tgstream.adapters.telegram_session import check_telegram  # noqa: PLC0415 - heavy

    ok, detail = asyncio.run(check_telegram(settings))
    return _Row("output telegram", ok, detail)


@app.command()
def check(env_file: EnvFile = None) -> None:
    """Pre-flight: tools, settings, FFMPEG_ARGS, every playlist entry, the output. Exit 0 if all
    pass, 1 if a check failed, 2 if the settings cannot be read."""

    def body() -> int:
        rows: list[_Row] = []
        for name, argv in (
            ("ffmpeg", ["ffmpeg", "-version"]),
            ("ffprobe", ["ffprobe", "-version"]),
            ("yt-dlp", [sys.executable, "-m", "yt_dlp", "--version"]),
        ):
            try:
                rows.append(_Row(name, True, _version(argv)))
            except SourceError as exc:
                rows.append(_Row(name, False, f"{exc}; install it (make run does)"))
        try:
            settings = _settings(env_file)
        except TgstreamError as exc:
            rows.append(_Row("settings", False, str(exc)))
            _print_rows(rows)
            return int(exc.exit_code)  # nothing else can be checked without settings
        setup_logging("ERROR")
        rows.append(
            _Row(
                "settings",
                True,
                f"output={settings.output} "
                f"quality={settings.VIDEO_QUALITY} loop={settings.LOOP} "
                f"shuffle={settings.SHUFFLE}",
            )
        )

        async def async_checks() -> None:
            children = Children()
            try:
                ffargs = await resolve_ffmpeg_args(settings, children)
                rows.append(
                    _Row(
                        "FFMPEG_ARGS",
                        ffargs.rejected is None,
                        ffargs.rejected
                        or ffargs.note
                        or (
                            f"{' '.join(ffargs.args)} (on every encode of OUTPUT={settings.output})"
                            if ffargs.custom
                            else "(none: preset)"
                        ),
                    )
                )
                catalog = Catalog(settings.PLAYLIST_FILE, settings.LOOP, settings.SHUFFLE)
                try:
                    parsed = catalog.load()
                except TgstreamError as exc:
                    rows.append(_Row("playlist", False, str(exc)))
                    return
                for error in parsed.errors:
                    rows.append(_Row(f"line {error.line}: {error.text}", False, error.reason))
                resolver = Resolver(
                    children, Prober(children), settings.quality, timeout=settings.RESOLVE_TIMEOUT
                )
                for name, result in await _resolve_all(catalog, resolver, sys.stderr.isatty()):
                    if isinstance(result, SourceError):
                        rows.append(_Row(name, False, f"{result} [{result.reason}]"))
                    else:
                        rows.append(_Row(name, True, _describe(result)))
            finally:
                await children.close()

        asyncio.run(async_checks())
        rows.append(_output_reachable(settings))
        return _print_rows(rows)

    _guard(body)


def _describe(track: Track) -> str:
    info = track.info
    length = "live" if info.live else f"{info.duration:.1f}s"
    video = f"{info.vcodec} {info.width}x{info.height}@{info.fps:.3g}" if info.has_video else "-"
    return f"{length}, video {video}, audio {info.acodec or '-'}"


def _print_table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A table on a terminal; otherwise one tab-separated line per row (CI logs, grep)."""
    console = Console()
    if console.is_terminal:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        for row in rows:
            sys.stdout.write("\t".join(Text.from_markup(cell).plain for cell in row) + "\n")


def _print_rows(rows: list[_Row]) -> int:
    failed = sum(not r.ok for r in rows)
    _print_table(
        "tgstream check",
        ("check", "result", "detail"),
        [
            (escape(r.name), "[green]PASS[/]" if r.ok else "[red]FAIL[/]", escape(r.detail))
            for r in rows
        ],
    )
    sys.stdout.write(f"{len(rows) - failed} checks passed, {failed} checks failed\n")
    return int(ExitCode.OK if failed == 0 else ExitCode.FAILURE)


@app.command()
def playlist(env_file: EnvFile = None) -> None:
    """Resolve every playlist item (with a progress bar) and show what would play. Exit 0 if
    every item can play, 1 otherwise."""

    def body() -> int:
        settings = _settings(env_file)
        setup_logging("ERROR")
        require_tools()

        async def resolve() -> list[tuple[str, Track | SourceError, str]]:
            children = Children()
            try:
                catalog = Catalog(settings.PLAYLIST_FILE, settings.LOOP, settings.SHUFFLE)
                catalog.load()
                prober = Prober(children)
                resolver = Resolver(
                    children, prober, settings.quality, timeout=settings.RESOLVE_TIMEOUT
                )
                planned: list[tuple[str, Track | SourceError, str]] = []
                for name, result in await _resolve_all(catalog, resolver, True):
                    mode = "-"
                    if isinstance(result, Track):
                        _, remux = await plan_remux(result, settings.quality, FfmpegArgs(), prober)
                        mode = "remux" if remux else "transcode"
                    planned.append((name, result, mode))
                return planned
            finally:
                await children.close()

        results = asyncio.run(resolve())
        rows = [
            (escape(name), f"[red]{result.reason}[/]", escape(str(result)), "-")
            if isinstance(result, SourceError)
            else (escape(name), "[green]ok[/]", escape(_describe(result)), mode)
            for name, result, mode in results
        ]
        _print_table(
            f"playlist {settings.PLAYLIST_FILE}", ("item", "status", "media", "mode"), rows
        )
        failed = any(isinstance(r, SourceError) for _, r, _ in results)
        return int(ExitCode.FAILURE if failed else ExitCode.OK)

    _guard(body)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir")] = Path(".demo"),
    clips: int = 3,
    seconds: float = 10.0,
) -> None:
    """Generate demo clips (testsrc2 + sine) and a playlist naming them."""

    def body() -> int:
        require_tools()
        path = make_demo(directory, clips, seconds)
        err_console.print(f"demo playlist: {path}")
        return 0

    _guard(body)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
