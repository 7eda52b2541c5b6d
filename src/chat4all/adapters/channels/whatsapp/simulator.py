"""A simulator of the WhatsApp Cloud API subset chat4all uses, on loopback.

- ``POST /{version}/{PHONE_NUMBER_ID}/messages`` (any ``v{N}.0``): a message, answered
  ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id":
  "wamid..."}]}``, or a mark-as-read (``status: read``), answered ``{"success": true}``;
- ``POST /{version}/{PHONE_NUMBER_ID}/media`` (multipart ``file``, ``type``,
  ``messaging_product``): the bytes' size and SHA-256 recorded, ``{"id": ...}`` answered;
- ``GET /{version}/{MEDIA_ID}``: the media's URL, type, size, SHA-256; ``GET`` that URL with
  the Bearer token: the bytes.

Errors in Graph's envelope (``{"error": {"message", "type", "code", "error_data",
"fbtrace_id"}}``): 190 for an unknown or expired token, 100 for a malformed request, 131009
for an invalid parameter value, and whatever faults a test queues (:meth:`fail`). Webhooks it
builds (messages, statuses, batches, duplicates, out-of-order statuses) are signed with the app
secret (:meth:`webhook_request`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat4all.adapters.channels.graph import VERSION, sign
from chat4all.plugin import Fault as Failure
from chat4all.ports import WebhookRequest

__all__ = ["WhatsAppSimulator", "Sent", "Upload", "SIMULATOR_TOKEN", "SIMULATOR_NUMBER"]

SIMULATOR_TOKEN: Final = "EAAsimulated-whatsapp-access-token-of-the-embedded-default"
SIMULATOR_NUMBER: Final = "106540352242922"
"""The phone number id of the embedded default's account (``sim-bot``)."""
_WABA: Final = "102290129340398"
_TEXT_MAX: Final = 4096
_KINDS: Final = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "location",
        "contacts",
        "reaction",
        "interactive",
        "template",
    }
)


@dataclass(frozen=True, slots=True)
class Sent:
    phone_number_id: str
    body: dict[str, Any]
    wamid: str
    at: float
    token: str = ""
    """The Bearer token it came with."""


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    phone_number_id: str
    filename: str | None
    mime_type: str
    size: int
    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Fault:
    code: int
    message: str
    status: int = 400
    subcode: int | None = None


_FAULTS: Final = {
    130429: Fault(130429, "Rate limit hit", 400),
    131056: Fault(131056, "(Business Account, Consumer Account) pair rate limit hit", 400),
    80007: Fault(80007, "Rate limit issues", 400),
    4: Fault(4, "(#4) Application request limit reached", 400),
    131047: Fault(131047, "Re-engagement message", 400),
    131026: Fault(131026, "Message Undeliverable", 400),
    131051: Fault(131051, "Unsupported message type", 400),
    368: Fault(368, "Temporarily blocked for policies violations", 400),
    131048: Fault(131048, "Spam rate limit hit", 400),
    131049: Fault(131049, "This message was not delivered to maintain healthy ecosystem", 400),
    190: Fault(190, "Error validating access token: Session has expired", 401, 463),
    131000: Fault(131000, "Something went wrong", 500),
    131016: Fault(131016, "Service unavailable", 503),
    2: Fault(2, "Service temporarily unavailable", 503),
}


@dataclass
class WhatsAppSimulator:
    numbers: dict[str, str]
    """Token → the phone number id it may send from."""
    app_secret: str
    sent: list[Sent] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    """Answered to the next calls, one each, before anything is recorded."""
    expired: set[str] = field(default_factory=set)
    """Tokens answered 190 until they are removed."""
    latency: float = 0.0
    calls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- faults ---------------------------------------------------------------------------

    def fail(self, code: int, times: int = 1) -> None:
        """Answer the next ``times`` calls with the documented error ``code``."""
        self.faults += [_FAULTS.get(code, Fault(code, f"error {code}", 400))] * times

    def inject(self, fault: Failure, times: int = 1) -> None:
        # throttled: the account's rate (80007; a number's throughput, 130429, the connector
        # waits out within the send)
        code = {Failure.THROTTLED: 80007, Failure.UNAVAILABLE: 131016}.get(fault, 131026)
        self.fail(code, times)

    def expire(self, token: str) -> None:
        self.expired.add(token)

    # --- what it received -----------------------------------------------------------------

    def sent_to(self, recipient: str) -> int:
        return sum(1 for s in self.sent if s.body.get("to") == recipient)

    def bodies(self, recipient: str | None = None) -> list[dict[str, Any]]:
        return [s.body for s in self.sent if recipient is None or s.body.get("to") == recipient]

    # --- webhooks -------------------------------------------------------------------------

    def notification(
        self,
        messages: Iterable[dict[str, Any]] = (),
        statuses: Iterable[dict[str, Any]] = (),
        number: str = SIMULATOR_NUMBER,
    ) -> dict[str, Any]:
        """One change, as Meta posts it."""
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        }
        messages = list(messages)
        if messages:
            value["contacts"] = [
                {"profile": {"name": "Sim User"}, "wa_id": m["from"]} for m in messages[:1]
            ]
            value["messages"] = messages
        statuses = list(statuses)
        if statuses:
            value["statuses"] = statuses
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": _WABA, "changes": [{"value": value, "field": "messages"}]}],
        }

    @staticmethod
    def batch(*notifications: dict[str, Any]) -> dict[str, Any]:
        """Several notifications as one POST (``entry[]`` joined)."""
        return {
            "object": "whatsapp_business_account",
            "entry": [e for n in notifications for e in n["entry"]],
        }

    def message(self, sender: str, kind: str = "text", **value: Any) -> dict[str, Any]:
        """A user's message object (``wamid`` new each time)."""
        wamid = f"wamid.HBgL{secrets.token_hex(12).upper()}"
        body = value or ({"body": "hi"} if kind == "text" else {})
        return {
            "from": sender,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": kind,
            kind: body,
        }

    @staticmethod
    def status(
        wamid: str,
        status: str,
        recipient: str,
        our_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": recipient,
        }
        if our_id is not None:
            doc["biz_opaque_callback_data"] = our_id
        if errors:
            doc["errors"] = errors
        return doc

    def statuses_of(self, sent: Sent, *statuses: str) -> dict[str, Any]:
        """Statuses for a message it accepted, in the order given (out of order, skipped or
        repeated as a test asks)."""
        to = str(sent.body.get("to"))
        opaque = sent.body.get("biz_opaque_callback_data")
        return self.notification(
            statuses=[self.status(sent.wamid, s, to, opaque) for s in statuses],
            number=sent.phone_number_id,
        )

    def user_message(self, sender: str, text: str) -> bytes:
        return json.dumps(self.notification([self.message(sender, body=text)])).encode()

    def webhook_request(
        self, account: str, payload: bytes, *, genuine: bool = True
    ) -> WebhookRequest:
        secret = self.app_secret if genuine else f"not-{self.app_secret}"
        headers = {"content-type": "application/json", "x-hub-signature-256": sign(secret, payload)}
        return WebhookRequest("POST", {}, headers, payload)

    async def push(self, webhook_url: str, payload: dict[str, Any], times: int = 1) -> list[int]:
        """POST ``payload`` to a webhook as Meta does (signed with the app secret), ``times``
        times (Meta redelivers); the HTTP statuses it got."""
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(self.app_secret, body),
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return [
                (await client.post(webhook_url, content=body, headers=headers)).status_code
                for _ in range(times)
            ]

    # --- the API --------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{version}/{number}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{number}/media", self._media, methods=["POST"]),
                Route("/_download/{media_id}", self._download, methods=["GET"]),
                Route("/{version}/{media_id}", self._media_info, methods=["GET"]),
            ]
        )

    async def _gate(self, request: Request, number: str | None) -> JSONResponse | None:
        """Version, token and queued faults: an error answer, or ``None`` to go on."""
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        version = request.path_params.get("version")
        if version is not None and not VERSION.fullmatch(version):
            return _error(Fault(2500, f"Unknown path components: /{version}", 400))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.numbers or token in self.expired:
            return _error(_FAULTS[190])
        if number is not None and self.numbers[token] != number:
            return _error(Fault(100, "Object with ID does not exist or lacks permission", 400, 33))
        if self.faults:
            return _error(self.faults.pop(0))
        return None

    async def _messages(self, request: Request) -> Response:
        number = request.path_params["number"]
        refused = await self._gate(request, number)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(Fault(100, "Invalid parameter: the body is not JSON", 400))
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return _error(Fault(100, "The parameter messaging_product is required.", 400))
        if body.get("status") == "read":
            if not str(body.get("message_id", "")).startswith("wamid."):
                return _error(Fault(100, "Invalid parameter: message_id", 400))
            self.reads.append(body)
            return JSONResponse({"success": True})
        problem = _invalid(body)
        if problem:
            return _error(Fault(131009, f"Parameter value is not valid: {problem}", 400))
        wamid = f"wamid.HBgN{next(self._ids):012d}{secrets.token_hex(6).upper()}"
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.sent.append(Sent(number, body, wamid, time.time(), token))
        to = str(body["to"])
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    async def _media(self, request: Request) -> Response:
        number = request.path_params["number"]
        refused = await self._gate(request, number)
        if refused is not None:
            return refused
        async with request.form() as form:
            upload = form.get("file")
            mime = str(form.get("type") or "")
            if form.get("messaging_product") != "whatsapp" or not isinstance(upload, UploadFile):
                return _error(Fault(100, "messaging_product and file are required", 400))
            data = await upload.read()
        media_id = str(900_000_000_000 + next(self._ids))
        self.uploads[media_id] = Upload(
            media_id,
            number,
            upload.filename,
            mime or upload.content_type or "application/octet-stream",
            len(data),
            hashlib.sha256(data).hexdigest(),
            data,
        )
        return JSONResponse({"id": media_id})

    async def _media_info(self, request: Request) -> Response:
        refused = await self._gate(request, None)
        if refused is not None:
            return refused
        upload = self.uploads.get(request.path_params["media_id"])
        if upload is None:
            return _error(Fault(100, "Unsupported get request: no such media", 400, 33))
        # where this simulator is served, ``/{version}/{media_id}`` off this URL (base_url
        # would miss the prefix it is mounted under in the hub's simulator server)
        root = str(request.url).split("?", 1)[0].rsplit("/", 2)[0]
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": f"{root}/_download/{upload.id}",
                "mime_type": upload.mime_type,
                "sha256": upload.sha256,
                "file_size": upload.size,
                "id": upload.id,
            }
        )

    async def _download(self, request: Request) -> Response:
        refused = await self._gate(request, None)
        if refused is not None:
            return refused
        upload = self.uploads.get(request.path_params["media_id"])
        if upload is None:
            return Response(b"", status_code=404)
        return Response(upload.data, media_type=upload.mime_type)

    def add_media(self, data: bytes, mime_type: str, number: str = SIMULATOR_NUMBER) -> str:
        """Media a user sent (its id, as an inbound message carries it)."""
        media_id = str(800_000_000_000 + next(self._ids))
        self.uploads[media_id] = Upload(
            media_id, number, None, mime_type, len(data), hashlib.sha256(data).hexdigest(), data
        )
        return media_id


def _invalid(body: dict[str, Any]) -> str | None:
    """What the Cloud API would refuse in a message body (``None``: nothing)."""
    kind = body.get("type", "text")
    if not body.get("to"):
        return "to is required"
    if kind not in _KINDS:
        return f"type {kind!r} is not a message type"
    value = body.get(kind)
    if not isinstance(value, dict) and not (kind == "contacts" and isinstance(value, list)):
        return f"{kind} object is required"
    if kind == "text":
        text = value.get("body", "") if isinstance(value, dict) else ""
        if not text or len(text) > _TEXT_MAX:
            return f"text.body must be 1-{_TEXT_MAX} characters"
    if kind in ("image", "video", "audio", "document", "sticker"):
        assert isinstance(value, dict)
        if not value.get("id") and not value.get("link"):
            return f"{kind} needs an id or a link"
    if kind == "interactive":
        assert isinstance(value, dict)
        action = value.get("action", {})
        if value.get("type") == "button" and not 1 <= len(action.get("buttons", [])) <= 3:
            return "interactive buttons: 1 to 3"
        if value.get("type") == "list":
            rows = sum(len(s.get("rows", [])) for s in action.get("sections", []))
            if not 1 <= rows <= 10:
                return "interactive list: 1 to 10 rows"
    return None


def _error(fault: Fault) -> JSONResponse:
    error: dict[str, Any] = {
        "message": fault.message,
        "type": "OAuthException",
        "code": fault.code,
        "error_data": {"messaging_product": "whatsapp", "details": fault.message},
        "fbtrace_id": f"A{secrets.token_urlsafe(16)}",
    }
    if fault.subcode is not None:
        error["error_subcode"] = fault.subcode
    return JSONResponse({"error": error}, status_code=fault.status)
