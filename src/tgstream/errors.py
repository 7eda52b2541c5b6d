"""tgstream's exceptions and the exit codes they map to.

::

    TgstreamError                 every error an operator can see; ``exit_code`` says how we end
    ├── ConfigError               a setting is invalid (exit 2)
    ├── PlaylistError             the playlist is missing, empty or wholly invalid (exit 3)
    ├── ToolError                 ffmpeg, ffprobe or yt-dlp is missing (exit 4)
    ├── OutputError               the output cannot be opened, e.g. preview port taken (exit 5)
    ├── SessionError              Telegram refused SESSION_STRING for good (exit 1 in
    │                             SESSION_RECOVERY=exit; otherwise the service goes degraded)
    └── SourceError               one track cannot be played; the engine skips it, never exits
        └── (reason)              one of SOURCE_FAILURE_REASONS, a bounded metric label

Each message names the cause and the next action to take.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Literal

__all__ = [
    "ExitCode",
    "TgstreamError",
    "ConfigError",
    "PlaylistError",
    "ToolError",
    "OutputError",
    "SessionError",
    "SourceError",
    "FailureReason",
    "SOURCE_FAILURE_REASONS",
]


class ExitCode(IntEnum):
    """Process exit codes of ``tgstream``; the README's table is generated from this list."""

    OK = 0
    """Stopped by SIGTERM/SIGINT, or ``LOOP=0`` and the playlist played once; ``check`` passed."""
    FAILURE = 1
    """``check`` found a problem, ``playlist`` found an item that cannot play, ``session
    check`` found the session unusable, or the Telegram session is invalid with
    SESSION_RECOVERY=exit."""
    CONFIG = 2
    """A setting in the environment or ``.env`` is invalid, ``.env`` is not ``KEY=value`` text,
    or ``--env-file`` names no file (the message names the key, or the file and line)."""
    PLAYLIST = 3
    """The playlist file is missing, empty, or has no valid entry."""
    TOOL = 4
    """ffmpeg, ffprobe or yt-dlp is not installed, or the ``[tgstream]`` extra is missing."""
    OUTPUT = 5
    """The output cannot be opened (for example the preview port is taken)."""


class TgstreamError(Exception):
    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(TgstreamError):
    exit_code = ExitCode.CONFIG


class PlaylistError(TgstreamError):
    exit_code = ExitCode.PLAYLIST


class ToolError(TgstreamError):
    exit_code = ExitCode.TOOL


class OutputError(TgstreamError):
    exit_code = ExitCode.OUTPUT


class SessionError(TgstreamError):
    """The Telegram session is dead; ``cause`` is a bounded label such as ``SESSION_EXPIRED``."""

    exit_code = ExitCode.FAILURE

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


FailureReason = Literal[
    "not_found", "corrupt", "resolve", "probe", "ffmpeg_exit", "stall", "no_media"
]
SOURCE_FAILURE_REASONS: Final[tuple[FailureReason, ...]] = (
    "not_found",
    "corrupt",
    "resolve",
    "probe",
    "ffmpeg_exit",
    "stall",
    "no_media",
)


class SourceError(TgstreamError):
    """One playlist item failed; ``reason`` is a bounded label, the message has the detail."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
