"""The session at the pyrogram boundary: parse offline, log in, classify, and make a new one.

- :func:`session_problem` judges a ``SESSION_STRING`` offline with pyrogram's own parser.
- :class:`PyrogramVerifier` connects and asks ``get_me`` within ``timeout`` seconds and turns
  every outcome into a :class:`~tgstream.session.Verdict`. A key Telegram no longer knows is
  not raised to the caller: kurigram raises ``AuthKeyNotFound`` (transport error -404) inside
  its receive task, ``connect()`` still succeeds and ``get_me`` would only time out, so the
  verifier watches that task (:func:`transport_failure`) while it waits. For the telegram
  output its first valid check also looks ``CHAT_ID`` up and logs why that failed: py-tgcalls
  swallows every error of its own first lookup (``ClientCache.get_input_call``) and then fails
  on something else (no video chat, no right to start one).
- :func:`login` is the interactive flow of ``tgstream session new``: phone, code, 2FA password.

Tests pass ``client_factory`` (a fake pyrogram client); nothing here connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from pyrogram import Client
from pyrogram.errors import (
    AuthKeyDuplicated,
    AuthKeyInvalid,
    AuthKeyUnregistered,
    BadRequest,
    FloodWait,
    PasswordHashInvalid,
    PhoneCodeEmpty,
    PhoneCodeExpired,
    PhoneCodeInvalid,
    PhoneNumberInvalid,
    SessionExpired,
    SessionPasswordNeeded,
    SessionRevoked,
    Unauthorized,
    UserDeactivated,
    UserDeactivatedBan,
)
from pyrogram.errors.rpc_error import RPCError
from pyrogram.session.session import AuthKeyNotFound, TransportError
from pyrogram.storage import SQLiteStorage
from pyrogram.types import TermsOfService

from tgstream.config import Settings
from tgstream.errors import ConfigError
from tgstream.session import SESSION_HINT, Verdict

__all__ = [
    "DEAD_SESSION_ERRORS",
    "ClientFactory",
    "LoginError",
    "Prompts",
    "PyrogramVerifier",
    "check_telegram",
    "classify",
    "credentials",
    "login",
    "make_client",
    "rpc_name",
    "session_facts",
    "session_problem",
    "transport_failure",
]

log = logging.getLogger(__name__)

CLIENT_NAME: Final = "tgstream"
DEAD_SESSION_ERRORS: Final = (
    SessionExpired,
    SessionRevoked,
    AuthKeyUnregistered,
    AuthKeyInvalid,
    AuthKeyDuplicated,
    UserDeactivated,
    UserDeactivatedBan,
    AuthKeyNotFound,
)
"""Errors after which only a new SESSION_STRING helps (``pyrogram.errors``, and the transport
error -404 of ``pyrogram.session.session``)."""
_DISCONNECT_TIMEOUT: Final = 5.0
_TRANSPORT_POLL: Final = 0.1
"""Seconds between looks at kurigram's receive task while a call is pending."""
T = TypeVar("T")

ClientFactory = Callable[[Settings], Any]


def rpc_name(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        return exc.ID or exc.NAME or type(exc).__name__
    return type(exc).__name__


def credentials(settings: Settings) -> tuple[int, str, str]:
    """``(API_ID, API_HASH, SESSION_STRING)``; :class:`ConfigError` names what is missing."""
    missing = [k for k in ("API_ID", "API_HASH", "SESSION_STRING") if getattr(settings, k) is None]
    if missing:
        raise ConfigError(
            f"the Telegram output needs {', '.join(missing)}: API_ID and API_HASH come from "
            f"my.telegram.org; for SESSION_STRING, {SESSION_HINT}"
        )
    assert settings.API_ID is not None
    assert settings.API_HASH is not None
    assert settings.SESSION_STRING is not None
    return (
        settings.API_ID,
        settings.API_HASH.get_secret_value(),
        settings.SESSION_STRING.get_secret_value(),
    )


def make_client(settings: Settings, *, updates: bool = False) -> Any:
    """A pyrogram client on the settings' session, kept in memory (nothing written to disk)."""
    api_id, api_hash, session = credentials(settings)
    return Client(
        CLIENT_NAME,
        api_id=api_id,
        api_hash=api_hash,
        session_string=session,
        in_memory=True,
        no_updates=not updates,
    )


async def session_facts(session: str) -> tuple[int, int] | None:
    """``(data centre, account id)`` that ``session`` names, read offline by pyrogram's own
    parser (0 when absent); ``None`` when it is not a session string at all."""
    storage: Any = SQLiteStorage(
        CLIENT_NAME, workdir=Path(), session_string=session, in_memory=True
    )
    try:
        await storage.open()
        return int(await storage.dc_id() or 0), int(await storage.user_id() or 0)
    except Exception:
        return None  # never show the parser's message: it is about the secret's bytes
    finally:
        with contextlib.suppress(Exception):
            await storage.close()


async def session_problem(session: str) -> str | None:
    """Why ``session`` cannot log in, judged offline by pyrogram's own parser; ``None`` if it may.

    Run before any connection: pyrogram would otherwise fail deep inside ``connect()``, or, for a
    session without a user, fall back to an interactive phone-number prompt.
    """
    facts = await session_facts(session)
    if facts is None:
        return "SESSION_STRING is malformed (not a Pyrogram/Kurigram session string)"
    dc_id, user_id = facts
    if not dc_id:
        return "SESSION_STRING is malformed (it names no Telegram data centre)"
    if not user_id:
        return "SESSION_STRING holds no logged-in account"
    return None


def classify(exc: BaseException, timeout: float) -> Verdict:
    """One failed login attempt as a verdict: dead session, or Telegram unreachable."""
    if isinstance(exc, AuthKeyNotFound):
        return Verdict(
            "dead",
            rpc_name(exc),
            "Telegram no longer knows this session's key (transport error -404, "
            f"AuthKeyNotFound: the session was logged out or deleted); {SESSION_HINT}",
        )
    if isinstance(exc, TimeoutError):
        # Before OSError, of which TimeoutError is a subclass.
        return Verdict(
            "unreachable",
            "timeout",
            f"no answer from Telegram within {timeout:g}s; check the network and firewall "
            "(outbound TCP 443 to Telegram); the session itself was not checked",
        )
    if isinstance(exc, DEAD_SESSION_ERRORS):
        name = rpc_name(exc)
        return Verdict("dead", name, f"Telegram rejected SESSION_STRING ({name}); {SESSION_HINT}")
    if isinstance(exc, Unauthorized):
        name = rpc_name(exc)
        return Verdict("dead", name, f"Telegram refused the session ({name}); {SESSION_HINT}")
    if isinstance(exc, FloodWait):
        return Verdict(
            "unreachable",
            "flood_wait",
            f"Telegram asks to wait {exc.value}s before logging in again (FloodWait)",
        )
    if isinstance(exc, RPCError):
        name = rpc_name(exc)
        return Verdict(
            "unreachable",
            name,
            f"Telegram refused the login ({name}); check API_ID and API_HASH (my.telegram.org)",
        )
    if isinstance(exc, (OSError, ConnectionError)):
        return Verdict(
            "unreachable",
            "network",
            f"cannot reach Telegram ({type(exc).__name__}: {exc}); check the network",
        )
    return Verdict(
        "unreachable", "error", f"login failed ({type(exc).__name__}: {exc}); see the log above"
    )


class PyrogramVerifier:
    """:class:`~tgstream.session.SessionVerifier` over pyrogram: connect, ``get_me``, disconnect,
    within ``timeout`` seconds. One attempt per call: the supervisor owns retries and backoff."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        client_factory: ClientFactory | None = None,
        look_up_chat: bool = True,
    ) -> None:
        self.timeout = timeout
        self._factory = client_factory or make_client
        self._chat_looked_up = not look_up_chat
        self.chat_problem: str | None = None
        """Why the first lookup of ``CHAT_ID`` failed, once it has (``None`` if it worked)."""
        logging.getLogger("asyncio").addFilter(_NOISE_FILTER)  # idempotent: one filter object

    async def verify(self, settings: Settings) -> Verdict:
        try:
            session = credentials(settings)[2]
        except ConfigError as exc:
            return Verdict("dead", "missing", str(exc))
        problem = await session_problem(session)
        if problem:
            cause = "no_account" if "no logged-in account" in problem else "malformed"
            return Verdict("dead", cause, f"{problem}; {SESSION_HINT}")
        return _scrubbed(await self._once(settings), settings.secrets())

    async def _once(self, settings: Settings) -> Verdict:
        client = self._factory(settings)
        try:
            async with asyncio.timeout(self.timeout):
                authorized = await _watched(client, client.connect())
                me = await _watched(client, client.get_me()) if authorized else None
            if me is not None:
                await self._first_chat_lookup(client, settings)
        except Exception as exc:
            return classify(exc, self.timeout)
        finally:
            await _disconnect_quietly(client)
        if me is None:
            return Verdict(
                "dead", "no_account", f"SESSION_STRING holds no logged-in account; {SESSION_HINT}"
            )
        return Verdict("valid", "ok", f"logged in as {me.first_name} (id {me.id})")

    async def _first_chat_lookup(self, client: Any, settings: Settings) -> None:
        """Look ``CHAT_ID`` up once per verifier; a failure is logged with its cause.

        A dead-session error is raised (the caller classifies it); any other is only logged:
        the session works, the broadcast's join will say more.
        """
        if self._chat_looked_up or settings.output != "telegram" or settings.CHAT_ID is None:
            return
        self._chat_looked_up = True
        try:
            async with asyncio.timeout(self.timeout):
                chat = await _watched(client, client.get_chat(settings.CHAT_ID))
        except (Unauthorized, *DEAD_SESSION_ERRORS):
            raise
        except Exception as exc:
            cause = "no answer in time" if isinstance(exc, TimeoutError) else rpc_name(exc)
            self.chat_problem = (
                f"looking up CHAT_ID={settings.CHAT_ID} failed ({cause}: {exc or 'no detail'}); "
                "check CHAT_ID (the group's id, -100...) and that this account is a member"
            )
            log.warning("telegram: %s", self.chat_problem)
            return
        log.info(
            "telegram: CHAT_ID=%s is %s", settings.CHAT_ID, getattr(chat, "title", None) or "found"
        )


async def check_telegram(
    settings: Settings,
    *,
    timeout: float = 10.0,
    client_factory: ClientFactory | None = None,
    look_up_chat: bool = True,
) -> tuple[bool, str]:
    """One login within ``timeout`` seconds for ``tgstream check``: ``(ok, detail)``. With
    ``look_up_chat`` (the telegram output's check) a CHAT_ID that cannot be looked up fails it
    too; ``session check`` judges the session alone."""
    verifier = PyrogramVerifier(
        timeout=timeout, client_factory=client_factory, look_up_chat=look_up_chat
    )
    verdict = await verifier.verify(settings)
    if verdict.valid and verifier.chat_problem:
        return False, _scrubbed(
            Verdict("valid", "ok", f"{verdict.detail}, but {verifier.chat_problem}"),
            settings.secrets(),
        ).detail
    return verdict.valid, verdict.detail


class _KurigramTransportNoise(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" traceback for a kurigram transport
    error: besides its receive task, kurigram's own restart task (never awaited by anyone) dies
    of the same -404. The verifier has already reported it, in one line, as a dead session."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, TransportError) and "never retrieved" in str(record.msg))


_NOISE_FILTER: Final = _KurigramTransportNoise()


def transport_failure(client: Any) -> TransportError | None:
    """The transport error kurigram's receive task ended with, if it did.

    kurigram raises a transport error (-404 ``AuthKeyNotFound`` above all) in
    ``Session.recv_worker``, a task nobody awaits: the session's start only sees its ping time
    out and schedules a restart, ``connect()`` returns, and every call waits for a session that
    never starts. The finished task keeps the exception; reading it here also keeps asyncio from
    logging it as never retrieved.
    """
    task = getattr(getattr(client, "session", None), "recv_task", None)
    if not isinstance(task, asyncio.Future) or not task.done() or task.cancelled():
        return None
    failure = task.exception()
    return failure if isinstance(failure, TransportError) else None


async def _watched(client: Any, call: Awaitable[T]) -> T:
    """``await call``, unless kurigram's receive task dies of a transport error first: then
    that error is raised here, where :func:`classify` can name it."""
    pending = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=_TRANSPORT_POLL)
            if done:
                return pending.result()
            if (failure := transport_failure(client)) is not None:
                raise failure
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending


async def _disconnect_quietly(client: Any) -> None:
    if not getattr(client, "is_connected", False):
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DISCONNECT_TIMEOUT):
            await client.disconnect()


def _scrubbed(verdict: Verdict, secrets: list[str]) -> Verdict:
    """Belt and braces: no message of ours may carry a secret, whatever an exception said."""
    detail = verdict.detail
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            detail = detail.replace(secret, "***")
    return Verdict(verdict.kind, verdict.cause, detail)


# ---- making a new session ------------------------------------------------------------------


class Prompts(Protocol):
    """How :func:`login` asks the operator; ``secret`` answers are read without echo."""

    def ask(self, question: str, *, secret: bool = False) -> str: ...

    def say(self, text: str) -> None: ...


class LoginError(Exception):
    """The login could not complete; the message says why and what to do."""


LOGIN_TRIES: Final = 3


async def login(
    api_id: int,
    api_hash: str,
    prompts: Prompts,
    *,
    phone: str | None = None,
    client_factory: Callable[[int, str], Any] | None = None,
    timeout: float = 30.0,
) -> str:
    """Log in interactively and return the new session string.

    A wrong phone number, code or 2FA password is reported and asked again, up to
    :data:`LOGIN_TRIES` times each.
    """
    factory = client_factory or (
        lambda i, h: Client(CLIENT_NAME, api_id=i, api_hash=h, in_memory=True, no_updates=True)
    )
    client = factory(api_id, api_hash)
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
        sent, phone = await _send_code(client, prompts, phone, timeout)
        await _enter_code(client, prompts, phone, sent.phone_code_hash, timeout)
        async with asyncio.timeout(timeout):
            session: str = await client.export_session_string()
    except TimeoutError:
        raise LoginError(
            f"no answer from Telegram within {timeout:g}s; check the network and try again"
        ) from None
    except (OSError, ConnectionError) as exc:
        raise LoginError(f"cannot reach Telegram ({exc}); check the network") from None
    except FloodWait as exc:
        raise LoginError(
            f"Telegram asks to wait {exc.value}s before the next login attempt (FloodWait)"
        ) from None
    except RPCError as exc:
        raise LoginError(
            f"Telegram refused the login ({rpc_name(exc)}); check API_ID and API_HASH "
            "(my.telegram.org) and the phone number"
        ) from None
    finally:
        await _disconnect_quietly(client)
    return session


async def _send_code(
    client: Any, prompts: Prompts, phone: str | None, timeout: float
) -> tuple[Any, str]:
    for _ in range(LOGIN_TRIES):
        number = phone or prompts.ask("Phone number (international format, e.g. +441234567890)")
        phone = None
        try:
            async with asyncio.timeout(timeout):
                return await client.send_phone_number_code(number.strip()), number.strip()
        except PhoneNumberInvalid:
            prompts.say("Telegram does not know that phone number; check it and try again.")
        except FloodWait as exc:
            raise LoginError(
                f"Telegram asks to wait {exc.value}s before sending another code (FloodWait)"
            ) from None
    raise LoginError(f"no valid phone number after {LOGIN_TRIES} tries")


async def _enter_code(
    client: Any, prompts: Prompts, phone: str, code_hash: str, timeout: float
) -> None:
    for _ in range(LOGIN_TRIES):
        code = prompts.ask("Login code (sent to your Telegram app)", secret=True).strip()
        try:
            async with asyncio.timeout(timeout):
                user = await client.sign_in(phone, code_hash, code)
        except (PhoneCodeInvalid, PhoneCodeEmpty):
            prompts.say("That code is wrong; check it in your Telegram app and try again.")
            continue
        except PhoneCodeExpired:
            raise LoginError(
                "the login code expired; run the command again for a new one"
            ) from None
        except SessionPasswordNeeded:
            await _enter_password(client, prompts, timeout)
            return
        if not user or isinstance(user, TermsOfService):
            raise LoginError(
                "this phone number has no Telegram account yet; sign up in a Telegram app first"
            )
        return
    raise LoginError(f"wrong login code {LOGIN_TRIES} times; run the command again")


async def _enter_password(client: Any, prompts: Prompts, timeout: float) -> None:
    for _ in range(LOGIN_TRIES):
        password = prompts.ask("Two-step verification password", secret=True)
        try:
            async with asyncio.timeout(timeout):
                await client.check_password(password)
        except PasswordHashInvalid:
            prompts.say("That password is wrong; try again.")
            continue
        except BadRequest as exc:
            raise LoginError(f"Telegram refused the password ({rpc_name(exc)})") from None
        return
    raise LoginError(f"wrong password {LOGIN_TRIES} times; run the command again")
