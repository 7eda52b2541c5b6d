"""A simulator of the Send API (Messenger) and of Instagram's messaging API, on loopback.

It answers as Meta documents: ``POST /{version}/{ID}/messages`` (any ``v{N}.0``) with a Bearer
token (or ``access_token``) → ``{"recipient_id", "message_id"}`` (a sender action:
``{"recipient_id"}``); ``POST /{version}/{ID}/message_attachments`` (Messenger: multipart with
``message`` and ``filedata``, or JSON by URL) → ``{"attachment_id"}``; errors in Graph's
envelope ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``:

- 190 for an unknown token or account; 100 for a request the API refuses (no recipient, a text
  longer than the platform takes, more than 13 quick replies, a missing or unknown
  ``messaging_type`` or tag, an unknown attachment type or ``attachment_id``, a button
  template on Instagram);
- 10/2018278 for a recipient whose window is closed (:meth:`close_window`) unless the send is
  ``MESSAGE_TAG`` with ``HUMAN_AGENT``;
- whatever faults a test queues (:meth:`inject`, :meth:`fail`): 613/4/17/32 rates, 2 with
  HTTP 500, 551, 190.

Everything it accepted is recorded (:attr:`sent`, :attr:`uploads` with each file's size and
SHA-256; ``GET /_sim/sent``). It makes the webhooks the platform pushes (messages, postbacks,
reactions, attachments, deliveries, reads, batches), signed with the app secret, and pushes
them. A user's attachment is served as Meta's CDN serves it: ``GET`` of the signed-looking URL
in the webhook's ``payload.url`` (:meth:`cdn_file`), no token needed; :attr:`cdn_faults` makes
the next downloads answer 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from chat4all.adapters.channels.graph import SIGNATURE_HEADER, VERSION, sign
from chat4all.adapters.channels.messenger.platform import (
    MESSAGING_TYPES,
    QUICK_REPLIES,
    Platform,
)
from chat4all.adapters.channels.messenger.sendapi import TEMPLATE_TEXT
from chat4all.plugin import Fault as Failure
from chat4all.ports import WebhookRequest

__all__ = ["SendApiSimulator", "Sent", "Upload", "GraphFault"]

_ACTIONS = {"typing_on", "typing_off", "mark_seen", "react", "unreact"}


@dataclass(frozen=True, slots=True)
class Sent:
    account: str
    """The provider id in the path (Page, Instagram account)."""
    body: dict[str, Any]
    message_id: str | None
    """``None`` for a sender action."""
    at: float


@dataclass(frozen=True, slots=True)
class Upload:
    account: str
    attachment_id: str
    type: str
    url: str | None
    filename: str | None
    size: int
    sha256: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class GraphFault:
    status: int
    code: int
    message: str
    subcode: int | None = None
    type: str = "OAuthException"


THROTTLED = GraphFault(400, 613, "Calls to this api have exceeded the rate limit.")
UNAVAILABLE = GraphFault(
    500, 2, "An unexpected error has occurred. Please retry your request later."
)
UNAVAILABLE_PERSON = GraphFault(400, 551, "This person isn't available right now.")
EXPIRED = GraphFault(400, 190, "Error validating access token: Session has expired.")
OUTSIDE = GraphFault(400, 10, "This message is sent outside of allowed window.", 2018278)


@dataclass
class SendApiSimulator:
    platform: Platform
    accounts: Mapping[str, str]
    """Provider id → its token."""
    app_secret: str
    sent: list[Sent] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    faults: list[GraphFault] = field(default_factory=list)
    """Answered to the next calls, one each, before anything is recorded."""
    closed: set[str] = field(default_factory=set)
    """Recipients whose 24 h window is closed."""
    latency: float = 0.0
    calls: int = 0
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """Users' attachments on the CDN: key → (bytes, content type)."""
    downloads: list[tuple[str, str | None]] = field(default_factory=list)
    """The CDN files downloaded (one per successful GET): the key and the ``Authorization``
    header the download came with (Meta's CDN needs none: it should be ``None``)."""
    cdn_faults: int = 0
    """The next CDN downloads answered 500 (one each)."""
    cdn_hold: asyncio.Event | None = None
    """Set: CDN downloads wait for it (a slow CDN)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- faults ---------------------------------------------------------------------------

    def inject(self, fault: Failure, times: int = 1) -> None:
        chosen = {
            Failure.THROTTLED: THROTTLED,
            Failure.UNAVAILABLE: UNAVAILABLE,
            Failure.REFUSED: UNAVAILABLE_PERSON,
        }[fault]
        self.faults += [chosen] * times

    def fail(self, fault: GraphFault, times: int = 1) -> None:
        self.faults += [fault] * times

    def close_window(self, recipient: str) -> None:
        """``recipient`` last wrote more than 24 h ago: a send without ``HUMAN_AGENT`` fails
        with 10/2018278."""
        self.closed.add(recipient)

    # -- what it received -----------------------------------------------------------------

    def sent_to(self, recipient: str) -> int:
        return sum(1 for s in self.sent if s.body.get("recipient", {}).get("id") == recipient)

    def messages(self, recipient: str | None = None) -> list[dict[str, Any]]:
        """The ``message`` objects sent (to ``recipient``), in order."""
        return [
            s.body["message"]
            for s in self.sent
            if "message" in s.body and (recipient is None or s.body["recipient"]["id"] == recipient)
        ]

    def texts(self, recipient: str | None = None) -> list[str]:
        return [m["text"] for m in self.messages(recipient) if "text" in m]

    # -- webhooks it pushes ---------------------------------------------------------------

    @property
    def account_id(self) -> str:
        """The first account's provider id (the embedded default's)."""
        return next(iter(self.accounts))

    def mid(self) -> str:
        prefix = "m_" if self.platform.channel == "messenger" else "aWdfZAG1"
        return f"{prefix}sim{next(self._ids):08d}"

    def delivery(self, *events: dict[str, Any], account: str | None = None) -> dict[str, Any]:
        """A delivery carrying ``events`` (``messaging[]`` items) for ``account``."""
        return {
            "object": self.platform.webhook_object,
            "entry": [
                {
                    "id": account or self.account_id,
                    "time": int(time.time() * 1000),
                    "messaging": list(events),
                }
            ],
        }

    def event(self, sender: str, **what: Any) -> dict[str, Any]:
        """One ``messaging[]`` item from ``sender`` to our account (``message=...``,
        ``postback=...``, ``reaction=...``, ``delivery=...``, ``read=...``)."""
        return {
            "sender": {"id": sender},
            "recipient": {"id": self.account_id},
            "timestamp": int(time.time() * 1000),
            **what,
        }

    def text_event(self, sender: str, text: str, **message: Any) -> dict[str, Any]:
        return self.event(sender, message={"mid": self.mid(), "text": text, **message})

    def cdn_file(self, data: bytes, content_type: str, root: str) -> str:
        """``data`` served as a user's attachment on the CDN; its URL (``root``: where this
        simulator is served), as a webhook's ``payload.url`` carries it."""
        key = f"{next(self._ids):08d}"
        self.files[key] = (data, content_type)
        extension = content_type.split("/", 1)[-1]
        return f"{root}/_cdn/{key}/{key}_n.{extension}?_nc_cat=1&oh=00_sim{key}&oe=68A0B0C0"

    def attachment_event(self, sender: str, kind: str, url: str, **message: Any) -> dict[str, Any]:
        """``sender`` sends a file (``kind``: ``image``, ``video``, ``audio``, ``file``)."""
        attachment = {"type": kind, "payload": {"url": url}}
        return self.event(
            sender, message={"mid": self.mid(), "attachments": [attachment], **message}
        )

    def user_message(self, sender: str, text: str) -> bytes:
        return json.dumps(self.delivery(self.text_event(sender, text))).encode()

    def webhook_request(
        self, account: str, payload: bytes, *, genuine: bool = True
    ) -> WebhookRequest:
        secret = self.app_secret if genuine else self.app_secret + "-forged"
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, payload)}
        return WebhookRequest("POST", {}, headers, payload)

    async def push(self, url: str, payload: dict[str, Any] | bytes, *, genuine: bool = True) -> int:
        """POST ``payload`` to a webhook URL as Meta does (signed); the status answered."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = self.webhook_request("", body, genuine=genuine)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url, content=body, headers=dict(request.headers))
        return answer.status_code

    # -- the API --------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(title=f"{self.platform.title} API simulator", docs_url=None, redoc_url=None)

        @app.post("/{version}/{account}/messages")
        async def messages(version: str, account: str, request: Request) -> JSONResponse:
            refused = await self._gate(version, account, request)
            if refused is not None:
                return refused
            try:
                body = await request.json()
            except ValueError:
                body = None
            return self._message(self._account(account, request), body)

        @app.post("/{version}/{account}/message_attachments")
        async def attachments(version: str, account: str, request: Request) -> JSONResponse:
            refused = await self._gate(version, account, request)
            if refused is not None:
                return refused
            return await self._attachment(self._account(account, request), request)

        @app.get("/_cdn/{key}/{name}")
        async def cdn(key: str, name: str, request: Request) -> Response:
            if self.cdn_hold is not None:
                await self.cdn_hold.wait()
            if self.cdn_faults:
                self.cdn_faults -= 1
                return Response(b"Service Unavailable", status_code=500, media_type="text/plain")
            if key not in self.files:
                return Response(b"URL signature expired", status_code=403, media_type="text/plain")
            data, content_type = self.files[key]
            self.downloads.append((key, request.headers.get("authorization")))
            return Response(data, media_type=content_type)

        @app.get("/_sim/sent")
        async def recorded() -> dict[str, Any]:
            return {
                "sent": [asdict(s) for s in self.sent],
                "uploads": [asdict(u) for u in self.uploads],
            }

        return app

    def _token(self, request: Request) -> str:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:]
        return request.query_params.get("access_token", "")

    def _account(self, account: str, request: Request) -> str:
        if account == "me":
            token = self._token(request)
            return next((a for a, t in self.accounts.items() if t == token), account)
        return account

    async def _gate(self, version: str, account: str, request: Request) -> JSONResponse | None:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if not VERSION.fullmatch(version):
            return _error(GraphFault(400, 2500, f"Unknown path components: /{version}"))
        account = self._account(account, request)
        if self.accounts.get(account) != self._token(request) or not self._token(request):
            return _error(GraphFault(400, 190, "Invalid OAuth access token."))
        if self.faults:
            return _error(self.faults.pop(0))
        return None

    def _message(self, account: str, body: Any) -> JSONResponse:
        platform = self.platform
        if not isinstance(body, dict):
            return _invalid("the request body must be a JSON object")
        recipient = str((body.get("recipient") or {}).get("id") or "")
        if not recipient:
            return _invalid("param recipient must be non-empty.", 2018001)
        action = body.get("sender_action")
        message = body.get("message")
        if (action is None) == (message is None):
            return _invalid("one of message and sender_action is required")
        if action is not None:
            if action not in _ACTIONS:
                return _invalid(f"param sender_action must be one of {sorted(_ACTIONS)}")
            payload = body.get("payload")
            if action in ("react", "unreact") and not (
                isinstance(payload, dict) and payload.get("message_id")
            ):
                return _invalid("param payload[message_id] is required to react")
            if action == "react" and not (isinstance(payload, dict) and payload.get("reaction")):
                return _invalid("param payload[reaction] is required")
            self.sent.append(Sent(account, body, None, time.time()))
            return JSONResponse({"recipient_id": recipient})
        kind = body.get("messaging_type")
        if kind is None and platform.channel == "messenger":
            return _invalid("param messaging_type is required")
        if kind is not None and kind not in MESSAGING_TYPES:
            return _invalid(f"param messaging_type must be one of {list(MESSAGING_TYPES)}")
        tag = body.get("tag")
        if kind == "MESSAGE_TAG" and tag not in platform.tags:
            return _invalid(f"param tag must be one of {list(platform.tags)}")
        if recipient in self.closed and not (kind == "MESSAGE_TAG" and tag == "HUMAN_AGENT"):
            return _error(OUTSIDE)
        refused = self._content(message)
        if refused is not None:
            return refused
        mid = self.mid()
        self.sent.append(Sent(account, body, mid, time.time()))
        return JSONResponse({"recipient_id": recipient, "message_id": mid})

    def _content(self, message: Any) -> JSONResponse | None:
        platform = self.platform
        if not isinstance(message, dict):
            return _invalid("param message must be an object")
        text, attachment = message.get("text"), message.get("attachment")
        if (text is None) == (attachment is None):
            return _invalid("param message must have one of text and attachment")
        if text is not None and (not text or platform.measure(str(text)) > platform.text):
            return _invalid(
                f"param message[text] must be 1 to {platform.text} {platform.unit}", 2018034
            )
        quick = message.get("quick_replies") or []
        if len(quick) > QUICK_REPLIES:
            return _invalid(f"param message[quick_replies] must have at most {QUICK_REPLIES}")
        if attachment is None:
            return None
        kind = attachment.get("type") if isinstance(attachment, dict) else None
        payload = attachment.get("payload") if isinstance(attachment, dict) else None
        if kind == "template" and platform.buttons and isinstance(payload, dict):
            buttons = payload.get("buttons") or []
            if not 1 <= len(buttons) <= platform.buttons or len(payload.get("text", "")) > (
                TEMPLATE_TEXT
            ):
                return _invalid(f"a button template has 1 to {platform.buttons} buttons")
            return None
        if kind not in set(platform.types.values()) or not isinstance(payload, dict):
            return _invalid(f"param message[attachment][type] {kind!r} is not supported")
        if "attachment_id" in payload:
            if not any(u.attachment_id == payload["attachment_id"] for u in self.uploads):
                return _invalid("no such attachment_id", 2018047)
        elif not str(payload.get("url", "")).startswith(("http://", "https://")):
            return _invalid("param message[attachment][payload][url] must be a URL")
        return None

    async def _attachment(self, account: str, request: Request) -> JSONResponse:
        if not self.platform.uploads:
            return _invalid("message_attachments is not supported here")
        filename = content_type = digest = None
        size = 0
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form() as form:
                raw = form.get("message")
                described = json.loads(raw) if isinstance(raw, str) else {}
                upload = form.get("filedata")
                if not isinstance(upload, UploadFile):
                    return _invalid("param filedata is required")
                sha = hashlib.sha256()
                while chunk := await upload.read(1 << 16):
                    sha.update(chunk)
                    size += len(chunk)
                filename, content_type, digest = (
                    upload.filename,
                    upload.content_type,
                    sha.hexdigest(),
                )
        else:
            described = await request.json()
        attachment = (described.get("message") or described).get("attachment") or {}
        kind = attachment.get("type")
        url = (attachment.get("payload") or {}).get("url")
        if kind not in set(self.platform.types.values()):
            return _invalid(f"param message[attachment][type] {kind!r} is not supported")
        if digest is None and not url:
            return _invalid("an upload needs filedata or payload.url")
        limit = max(self.platform.max_bytes.values())
        if size > limit:
            return _invalid("the attachment is too large", 2018109)
        attachment_id = f"{next(self._ids) + 9_000_000_000}"
        self.uploads.append(
            Upload(account, attachment_id, kind, url, filename, size, digest, content_type)
        )
        return JSONResponse({"attachment_id": attachment_id})


def _invalid(message: str, subcode: int | None = None) -> JSONResponse:
    return _error(GraphFault(400, 100, message, subcode))


def _error(fault: GraphFault) -> JSONResponse:
    error: dict[str, Any] = {
        "message": fault.message,
        "type": fault.type,
        "code": fault.code,
        "fbtrace_id": "AsimFbTrace",
    }
    if fault.subcode is not None:
        error["error_subcode"] = fault.subcode
    return JSONResponse({"error": error}, status_code=fault.status)
