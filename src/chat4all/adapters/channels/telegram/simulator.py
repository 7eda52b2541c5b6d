"""A simulator of the Bot API subset chat4all uses, on loopback.

It answers as the Bot API documents (``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code", "description", "parameters"}``): 401 for an unknown token, 400 for an empty or
too long text, 400 for a media method without its file (neither a URL/file_id nor an upload),
403 for a chat that blocked the bot, and whatever faults a test queues (a 429 with
``retry_after``, a 500). Everything it accepted is recorded in :attr:`sent`: parameters sent as
JSON, as a form or as multipart/form-data (as the Bot API, an object parameter such as
``reply_markup`` arrives JSON-serialised in a form and is recorded parsed), and each uploaded
file's name, size, SHA-256 and type.

    sim = TelegramSimulator(tokens={"123:abc"})
    async with sim.running() as url: ...   # point TelegramConnector(api_url=url) at it

It is also the channel's :class:`~chat4all.plugin.Simulator` (served with the others by
:mod:`chat4all.simulator.host`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from chat4all.adapters.channels.telegram.updates import SECRET_HEADER
from chat4all.plugin import Fault as Failure
from chat4all.ports import WebhookRequest
from chat4all.simulator.host import serving

__all__ = ["TelegramSimulator", "Sent", "SentFile", "Fault", "SIMULATOR_TOKEN"]

SIMULATOR_TOKEN: Final = "100000:simulated-bot-token-for-the-embedded-default"
"""The bot token of the embedded default's account (``sim-bot``)."""

_CHAT_ACTIONS: Final = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
"""``sendChatAction``'s ``action`` values (Bot API)."""

_SEND_METHODS = {
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendVideo",
    "sendAudio",
    "sendLocation",
    "sendSticker",
}
_FILE_FIELDS = {
    "sendSticker": "sticker",
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVideo": "video",
    "sendAudio": "audio",
}


@dataclass(frozen=True, slots=True)
class SentFile:
    """A file uploaded in a multipart/form-data call."""

    filename: str | None
    size: int
    sha256: str
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Sent:
    token: str
    method: str
    body: dict[str, Any]
    message_id: int
    at: float
    files: dict[str, SentFile] = field(default_factory=dict)
    """Uploads by form field (``photo``, ``document`` ...)."""


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    description: str
    retry_after: int | None = None
    method: str | None = None
    """Only a call of this method meets it (``None``: the next send call, whichever)."""


@dataclass
class TelegramSimulator:
    tokens: set[str]
    sent: list[Sent] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    """Answered to the next send calls, one each, before anything is recorded."""
    blocked: set[str] = field(default_factory=set)
    updates: list[dict[str, Any]] = field(default_factory=list)
    """Waiting for getUpdates (``enqueue``); confirmed ones are dropped as the offset passes."""
    latency: float = 0.0
    """Seconds each call takes (to catch a crash mid-call in tests)."""
    secret: str | None = None
    """The webhook secret token it sends with the updates it pushes."""
    calls: int = 0
    abandoned: int = 0
    """Calls whose caller went away before its request arrived whole (nothing was done)."""
    actions: list[Sent] = field(default_factory=list)
    """``sendChatAction`` calls accepted (not messages: ``sent`` does not hold them)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(500_001))
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)

    def throttle(self, retry_after: int, times: int = 1) -> None:
        self.faults += [
            Fault(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        ] * times

    def fail(self, status: int = 500, times: int = 1, method: str | None = None) -> None:
        self.faults += [Fault(status, "Internal Server Error", method=method)] * times

    def update(self, chat_id: int, text: str, **message: Any) -> dict[str, Any]:
        """A Bot API ``Update`` carrying a user's text message, as Telegram would send it."""
        update_id = next(self._update_ids)
        return {
            "update_id": update_id,
            "message": {
                "message_id": 10_000 + update_id,
                "from": {"id": chat_id, "is_bot": False, "first_name": "User"},
                "chat": {"id": chat_id, "type": "private"},
                "date": int(time.time()),
                "text": text,
                **message,
            },
        }

    def inject(self, fault: Failure, times: int = 1) -> None:
        if fault is Failure.THROTTLED:
            self.throttle(retry_after=1, times=times)
        elif fault is Failure.UNAVAILABLE:
            self.fail(500, times)
        else:
            self.faults += [Fault(403, "Forbidden: bot was blocked by the user")] * times

    def sent_to(self, recipient: str) -> int:
        return sum(1 for s in self.sent if str(s.body.get("chat_id")) == recipient)

    def user_message(self, sender: str, text: str) -> bytes:
        return json.dumps(self.update(int(sender), text)).encode()

    def webhook_request(
        self, account: str, payload: bytes, *, genuine: bool = True
    ) -> WebhookRequest:
        secret = (self.secret or "") if genuine else f"not-{self.secret}"
        headers = {"content-type": "application/json", SECRET_HEADER: secret}
        return WebhookRequest("POST", {}, headers, payload)

    async def push(self, webhook_url: str, secret: str | None, update: dict[str, Any]) -> int:
        """Deliver ``update`` to a webhook as Telegram does; returns the HTTP status."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(webhook_url, json=update, headers=headers)
        return answer.status_code

    def enqueue(self, update: dict[str, Any]) -> None:
        """Make ``update`` available to getUpdates (long polling)."""
        self.updates.append(update)
        self._new_update.set()

    async def _get_updates(self, body: dict[str, Any]) -> JSONResponse:
        offset = int(body.get("offset") or 0)
        timeout = min(float(body.get("timeout") or 0), 50.0)
        limit = int(body.get("limit") or 100)
        # As the Bot API: an offset confirms (forgets) every update before it.
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout)
        return _ok_list(self.updates[:limit])

    def texts(self, chat: str | None = None) -> list[str]:
        return [
            s.body.get("text", "")
            for s in self.sent
            if chat is None or str(s.body["chat_id"]) == chat
        ]

    def app(self) -> FastAPI:
        app = FastAPI(title="Telegram Bot API simulator", docs_url=None, redoc_url=None)

        @app.post("/bot{token}/{method}")
        async def call(token: str, method: str, request: Request) -> JSONResponse:
            self.calls += 1
            if self.latency:
                await asyncio.sleep(self.latency)
            files: dict[str, SentFile] = {}
            try:
                if request.headers.get("content-type", "").startswith(
                    ("multipart/form-data", "application/x-www-form-urlencoded")
                ):
                    body, files = await _form(request)
                else:
                    try:
                        body = await request.json()
                    except ValueError:
                        body = {}
            except ClientDisconnect:
                # The caller went away (a killed hub) before its request arrived whole: like
                # the real API, nothing is done and nobody is answered.
                self.abandoned += 1
                return JSONResponse({"ok": False, "description": "client disconnected"}, 499)
            if method == "getUpdates" and token in self.tokens:
                return await self._get_updates(body)
            return self._answer(token, method, body, files)

        @app.get("/_sim/sent")
        async def recorded() -> list[dict[str, Any]]:
            return [
                {
                    "method": s.method,
                    "body": s.body,
                    "message_id": s.message_id,
                    "files": {k: asdict(f) for k, f in s.files.items()},
                }
                for s in self.sent
            ]

        return app

    def _answer(
        self,
        token: str,
        method: str,
        body: dict[str, Any],
        files: dict[str, SentFile] | None = None,
    ) -> JSONResponse:
        files = files or {}
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        if method == "getMe":
            return _ok(
                {"id": int(token.split(":", maxsplit=1)[0]), "is_bot": True, "first_name": "sim"}
            )
        if method == "sendChatAction":
            return self._chat_action(token, body)
        if method == "setMessageReaction":
            return self._reaction(token, body)
        if method not in _SEND_METHODS:
            return _error(404, "Not Found: method not found")
        fault = next((f for f in self.faults if f.method in (None, method)), None)
        if fault is not None:
            self.faults.remove(fault)
            return _error(fault.status, fault.description, fault.retry_after)
        chat = str(body.get("chat_id", ""))
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        if chat in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if method == "sendMessage":
            text = str(body.get("text", ""))
            if not text.strip():
                return _error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return _error(400, "Bad Request: message is too long")
        wanted = _FILE_FIELDS.get(method)
        if wanted is not None and not body.get(wanted) and wanted not in files:
            return _error(400, f"Bad Request: there is no {wanted} in the request")
        message_id = next(self._ids)
        self.sent.append(Sent(token, method, body, message_id, time.time(), files))
        return _ok({"message_id": message_id, "chat": {"id": chat}, "date": int(time.time())})

    def _reaction(self, token: str, body: dict[str, Any]) -> JSONResponse:
        chat, target = str(body.get("chat_id", "")), body.get("message_id")
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        mine = {s.message_id for s in self.sent if str(s.body.get("chat_id")) == chat}
        if not isinstance(target, int) or target not in mine:
            return _error(400, "Bad Request: message to react not found")
        reaction = body.get("reaction", [])
        if not isinstance(reaction, list) or any(
            not isinstance(r, dict) or r.get("type") != "emoji" or not r.get("emoji")
            for r in reaction
        ):
            return _error(400, "Bad Request: REACTION_INVALID")
        self.sent.append(Sent(token, "setMessageReaction", body, target, time.time()))
        return JSONResponse({"ok": True, "result": True})

    def _chat_action(self, token: str, body: dict[str, Any]) -> JSONResponse:
        chat = str(body.get("chat_id", ""))
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        if chat in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if body.get("action") not in _CHAT_ACTIONS:
            return _error(400, "Bad Request: wrong parameter action in request")
        self.actions.append(Sent(token, "sendChatAction", body, 0, time.time()))
        return JSONResponse({"ok": True, "result": True})

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on loopback for the duration; yields the base URL (the Bot API's root)."""
        async with serving(self.app(), host, port) as url:
            yield url


async def _form(request: Request) -> tuple[dict[str, Any], dict[str, SentFile]]:
    """A form's parameters and its uploads (hashed as they are read back, a chunk at a time)."""
    body: dict[str, Any] = {}
    files: dict[str, SentFile] = {}
    async with request.form() as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                digest, size = hashlib.sha256(), 0
                while chunk := await value.read(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                files[key] = SentFile(value.filename, size, digest.hexdigest(), value.content_type)
            elif key == "reply_markup":
                try:
                    body[key] = json.loads(value)
                except ValueError:
                    body[key] = value
            else:
                body[key] = value
    return body, files


def _ok(result: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _ok_list(result: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> JSONResponse:
    doc: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        doc["parameters"] = {"retry_after": retry_after}
    return JSONResponse(doc, status_code=status)
