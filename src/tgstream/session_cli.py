"""``tgstream session``: check the Telegram session, or make a new one and write it to ``.env``.

``python test/auto_session_runner.py --write-env`` (the seed's runbook command) runs the same
code as ``tgstream session new --write-env .env``, and ``python test/diag_session.py`` the same
as ``tgstream session check`` (:func:`diagnose`).

Exit codes of both commands: 0 success; 1 failure (the message says what failed and what to do),
including "stdin is not a terminal" for ``new``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.prompt import Prompt

from opskit.envfile import EnvFileError, lock_path, update_env
from opskit.logs import MASKER, mask_secret, setup_logging
from tgstream.config import DEFAULT_ENV_FILE, Settings, load_settings, settings_file
from tgstream.errors import ExitCode, TgstreamError
from tgstream.session import RECOVERY_COMMAND

__all__ = [
    "session_app",
    "regenerate",
    "diagnose",
    "new_session",
    "TerminalPrompts",
    "NOT_A_TERMINAL",
]

log = logging.getLogger("tgstream.session")

NOT_A_TERMINAL = (
    "stdin is not a terminal: making a session asks for the phone number, the login code and "
    "maybe the 2FA password; run this in an interactive shell (for a remote host: ssh -t)"
)

session_app = typer.Typer(
    no_args_is_help=True,
    help="Check the Telegram session, or make a new one. Exit codes: 0 ok, 1 failure.",
)
_err = Console(stderr=True, highlight=False)


class TerminalPrompts:
    """:class:`~tgstream.adapters.telegram_session.Prompts` on the terminal (no echo for
    secrets)."""

    def ask(self, question: str, *, secret: bool = False) -> str:
        return Prompt.ask(question, password=secret, console=_err)

    def say(self, text: str) -> None:
        _err.print(f"[yellow]{text}[/]")


def _load(env_file: Path | None) -> Settings:
    return load_settings(settings_file(env_file))


async def regenerate(
    env_file: Path | None,
    settings: Settings,
    *,
    prompts: Any = None,
    client_factory: Callable[[int, str], Any] | None = None,
    phone: str | None = None,
) -> int:
    """Log in interactively; write ``SESSION_STRING`` to ``env_file`` (or print it). 0 or 1."""
    from tgstream.adapters.telegram_session import LoginError, login  # noqa: PLC0415 - heavy

    if settings.API_ID is None or settings.API_HASH is None:
        log.error(
            "a new session needs API_ID and API_HASH (from my.telegram.org) in %s or the "
            "environment",
            env_file or "the environment",
        )
        return int(ExitCode.FAILURE)
    try:
        session = await login(
            settings.API_ID,
            settings.API_HASH.get_secret_value(),
            prompts or TerminalPrompts(),
            phone=phone,
            client_factory=client_factory,
        )
    except LoginError as exc:
        log.error("no new session: %s", exc)
        return int(ExitCode.FAILURE)
    except (EOFError, KeyboardInterrupt):
        log.error("cancelled; .env is unchanged")
        return int(ExitCode.FAILURE)
    MASKER.add(session)
    if env_file is None:
        _err.print("new SESSION_STRING (put it in .env as SESSION_STRING=...):")
        sys.stdout.write(session + "\n")
        return int(ExitCode.OK)
    try:
        backup = update_env(env_file, {"SESSION_STRING": session})
    except EnvFileError as exc:
        log.error("the new session was not saved: %s", exc)
        # Logging in again may hit FloodWait: hand the session over rather than lose it.
        _err.print("the new SESSION_STRING, to put in .env by hand:")
        sys.stdout.write(session + "\n")
        return int(ExitCode.FAILURE)
    log.info(
        "SESSION_STRING=%s written to %s (backup: %s; lock: %s)",
        mask_secret(session),
        env_file,
        backup or "none, the file is new",
        lock_path(env_file),
    )
    log.info(
        "a running service in degraded mode picks it up within REAUTH_INTERVAL; otherwise "
        "restart it: systemctl restart tg_video_streamer"
    )
    return int(ExitCode.OK)


def new_session(
    env_file: Path | None,
    write_env: Path | None,
    phone: str | None,
    *,
    client_factory: Callable[[int, str], Any] | None = None,
    interactive: bool | None = None,
) -> int:
    """The body of ``session new``; tests call it with a fake client factory."""
    setup_logging("INFO")
    if not (sys.stdin.isatty() if interactive is None else interactive):
        log.error("%s", NOT_A_TERMINAL)
        return int(ExitCode.FAILURE)
    # Credentials come from --env-file, else ./.env, else the file the session is written to.
    source = env_file
    if source is None and not DEFAULT_ENV_FILE.is_file() and write_env is not None:
        source = write_env if write_env.is_file() else None
    try:
        settings = _load(source)
    except TgstreamError as exc:
        log.error("%s", exc)
        return int(ExitCode.FAILURE)
    return asyncio.run(regenerate(write_env, settings, client_factory=client_factory, phone=phone))


@session_app.command("new")
def new_command(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Where API_ID and API_HASH are read from (default: ./.env when it exists).",
            show_default=False,
        ),
    ] = None,
    write_env: Annotated[
        Path | None,
        typer.Option(
            "--write-env",
            help="Write SESSION_STRING into this .env (atomically, under its lock, with a "
            "backup). Without it the new session is printed on stdout.",
        ),
    ] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number; asked when not given.")] = None,
) -> None:
    """Log in (phone, code, 2FA password) and make a new SESSION_STRING."""
    raise typer.Exit(new_session(env_file, write_env, phone))


def diagnose(
    env_file: Path | None,
    timeout: float = 10.0,
    *,
    client_factory: Callable[[Settings], Any] | None = None,
) -> int:
    """The body of ``session check`` and of ``python test/diag_session.py``: the configured
    session (masked), the data centre and account it names, and whether Telegram logs it in,
    as whom. 0 valid, 1 not (the message says why and what to do)."""
    setup_logging("WARNING")
    try:
        settings = _load(env_file)
    except TgstreamError as exc:
        _err.print(f"[bold red]error:[/] {exc}")
        return int(ExitCode.FAILURE)
    where = env_file or (DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None)
    source = f"{where} or the environment" if where else "the environment"
    if settings.SESSION_STRING is None:
        _err.print(
            f"[bold red]session not usable[/]: SESSION_STRING is not set (in {source}); "
            f"make one: {RECOVERY_COMMAND}"
        )
        return int(ExitCode.FAILURE)
    from tgstream.adapters.telegram_session import (  # noqa: PLC0415 - heavy
        check_telegram,
        session_facts,
    )

    async def both() -> tuple[tuple[int, int] | None, tuple[bool, str]]:
        session = settings.SESSION_STRING
        assert session is not None
        facts = await session_facts(session.get_secret_value())
        return facts, await check_telegram(
            settings, timeout=timeout, client_factory=client_factory, look_up_chat=False
        )

    facts, (ok, detail) = asyncio.run(both())
    named = (
        "not a session string"
        if facts is None
        else f"DC {facts[0] or '?'}, account id {facts[1] or 'none'}"
    )
    masked = mask_secret(settings.SESSION_STRING.get_secret_value())
    _err.print(f"SESSION_STRING={masked} (from {source}): {named}", markup=False)
    if ok:
        _err.print(f"[green]session valid[/]: {detail}")
    else:
        _err.print(f"[bold red]session not usable[/]: {detail}")
    return int(ExitCode.OK if ok else ExitCode.FAILURE)


@session_app.command("check")
def check_command(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Settings file (default: ./.env when it exists).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the login may take.")] = 10.0,
) -> None:
    """The session (masked), its data centre, and who Telegram logs it in as (exit 0 valid,
    1 not)."""
    raise typer.Exit(diagnose(env_file, timeout))
