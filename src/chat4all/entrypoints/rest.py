"""REST API (FastAPI, ``/v1``). Handlers only translate: parse, call one use case, map errors.

Every error body is ``{"error": {"code", "message", "field"}}`` with the status of
:mod:`chat4all.errors` (422 for invalid input, with the field).
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as Message_

from chat4all import __version__
from chat4all.adapters.storage.keys import Principal
from chat4all.adapters.storage.webhooks import WebhookStore
from chat4all.domain.model import (
    ATTACHMENT_KINDS,
    Attachment,
    Button,
    Channel,
    Content,
    Conversation,
    Location,
    Media,
    Message,
    Template,
    message_document,
)
from chat4all.entrypoints.uploads import chunks_of, read_upload
from chat4all.errors import AuthError, Chat4AllError, InvalidRequest, RateLimited
from chat4all.metrics import HubMetrics
from chat4all.ports import Page, SendRequest
from chat4all.service_layer.access import Access
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.messages import Messages

__all__ = ["create_app"]


class DeadLetters(Protocol):
    async def dead_letters(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[tuple[Message, str]]: ...

    async def replay(self, tenant: str, message_id: str, now: float) -> Message: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentIn(_Strict):
    url: str | None = Field(default=None, max_length=2048, description="An http(s) link")
    media_id: str | None = Field(
        default=None, max_length=32, description="An upload's id (POST /v1/media)"
    )
    kind: Literal["image", "video", "audio", "document"] | None = Field(
        default=None, description="Default: document for a url, the upload's kind for a media_id"
    )
    filename: str | None = Field(default=None, max_length=255)
    mime_type: str | None = Field(default=None, max_length=127)
    caption: str | None = None


class LocationIn(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None


class ButtonIn(_Strict):
    title: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)


class TemplateIn(_Strict):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    parameters: list[str] = []


class ContentIn(_Strict):
    text: str | None = None
    attachments: list[AttachmentIn] = []
    location: LocationIn | None = None
    reply_to: str | None = None
    template: TemplateIn | None = None
    buttons: list[ButtonIn] = []
    extensions: dict[str, str] = {}

    def to_domain(self) -> Content:
        return Content(
            text=self.text,
            attachments=tuple(Attachment(**a.model_dump()) for a in self.attachments),
            location=Location(**self.location.model_dump()) if self.location else None,
            reply_to=self.reply_to,
            template=(
                Template(
                    self.template.name, self.template.language, tuple(self.template.parameters)
                )
                if self.template
                else None
            ),
            buttons=tuple(Button(**b.model_dump()) for b in self.buttons),
            extensions=tuple(sorted(self.extensions.items())),
        )


class SubscriptionIn(_Strict):
    url: str = Field(min_length=8, max_length=2048)
    events: list[Literal["message.status", "message.inbound"]] = Field(min_length=1)


class SendIn(_Strict):
    channel: Channel
    account: str = Field(min_length=1, max_length=128, description="Our account on the channel")
    recipient: str = Field(min_length=1, max_length=128, description="The chat/user on the channel")
    content: ContentIn


def _conversation(conversation: Conversation) -> dict[str, Any]:
    return asdict(conversation)


def media_document(media: Media) -> dict[str, Any]:
    """An upload as clients see it (no tenant, no storage details)."""
    return {
        "id": media.id,
        "filename": media.filename,
        "mime_type": media.mime_type,
        "size": media.size,
        "sha256": media.sha256,
        "kind": media.kind,
    }


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "kind": {
                            "type": "string",
                            "enum": list(ATTACHMENT_KINDS),
                            "description": "Default: from the file's type (JPEG, PNG, WebP: "
                            "image; MP4: video; MP3, M4A, OGG: audio; else document)",
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "201": {
            "description": "Stored",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "filename": {"type": "string"},
                            "mime_type": {"type": "string"},
                            "size": {"type": "integer"},
                            "sha256": {"type": "string"},
                            "kind": {"type": "string", "enum": list(ATTACHMENT_KINDS)},
                        },
                    }
                }
            },
        }
    },
}


class _Measure:
    """Request metrics as a plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task
    and a stream copy per request)."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def capture(message: Message_) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - began)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


def _presented(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


def _allowed(action: str) -> Callable[..., Awaitable[Principal]]:
    async def check(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Principal:
        access: Access = request.app.state.access
        return await access.authorize(_presented(authorization, x_api_key), action)

    return check


Sender = Annotated[Principal, Depends(_allowed("send"))]
Reader = Annotated[Principal, Depends(_allowed("read"))]


Admin = Annotated[Principal, Depends(_allowed("admin"))]


def create_app(
    messages: Messages,
    access: Access,
    ready: Callable[[], Awaitable[bool]],
    on_accepted: Callable[[], None] | None = None,
    metrics: HubMetrics | None = None,
    refresh_gauges: Callable[[], Awaitable[None]] | None = None,
    dead_letters: DeadLetters | None = None,
    inbound: Inbound | None = None,
    bus: EventBus | None = None,
    telegram_secret: str | None = None,
    webhooks: WebhookStore | None = None,
    media: MediaLibrary | None = None,
) -> FastAPI:
    app = FastAPI(title="chat4all", version=__version__, openapi_url="/v1/openapi.json")
    app.state.access = access

    if metrics is not None:
        app.add_middleware(_Measure, metrics=metrics)

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def scrape() -> Response:
            if refresh_gauges is not None:
                await refresh_gauges()
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if dead_letters is not None:

        @app.get("/v1/dead-letters", tags=["dead letters"])
        async def list_dead(
            who: Admin,
            cursor: str | None = None,
            limit: Annotated[int, Query(ge=1, le=200)] = 50,
        ) -> dict[str, Any]:
            """Messages given up on, with the last error; replay them once the cause is fixed."""
            page = await dead_letters.dead_letters(who.tenant, cursor, limit)
            return {
                "items": [{"message": message_document(m), "error": e} for m, e in page.items],
                "next_cursor": page.next_cursor,
            }

        @app.post("/v1/dead-letters/{message_id}/replay", status_code=202, tags=["dead letters"])
        async def replay(message_id: str, who: Admin) -> dict[str, Any]:
            message = await dead_letters.replay(who.tenant, message_id, time.time())
            if on_accepted is not None:
                on_accepted()
            return message_document(message)

    @app.exception_handler(Chat4AllError)
    async def domain_error(_request: Request, exc: Chat4AllError) -> JSONResponse:
        answer = _error(exc.status, exc.code, str(exc), getattr(exc, "field", None))
        if isinstance(exc, RateLimited):
            answer.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(422, "invalid_argument", f"{where}: {first['msg']}", where)

    @app.post("/v1/messages", status_code=202, tags=["messages"])
    async def send(
        body: SendIn,
        who: Sender,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Accept a message for delivery; 202 means it is durable."""
        request = SendRequest(body.channel, body.account, body.recipient, body.content.to_domain())
        accepted = await messages.send(who.tenant, request, idempotency_key)
        if on_accepted is not None and not accepted.replayed:
            on_accepted()
        headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
        return JSONResponse(message_document(accepted.message), status_code=202, headers=headers)

    if media is not None:

        @app.post("/v1/media", status_code=201, tags=["media"], openapi_extra=_UPLOAD_BODY)
        async def upload(request: Request, who: Sender) -> JSONResponse:
            """Upload a file (multipart/form-data: ``file``, optional ``kind``) to send it by
            the returned id (an attachment's ``media_id``); at most CHAT4ALL_MEDIA_MAX_BYTES."""
            form = await read_upload(
                request,
                file_field="file",
                fields=("kind",),
                max_bytes=media.max_bytes,
                too_big=media.too_big,
            )
            with form.file:
                stored = await media.upload(
                    who.tenant,
                    chunks_of(form.file),
                    form.filename,
                    form.content_type,
                    form.fields.get("kind") or None,
                )
            return JSONResponse(media_document(stored), status_code=201)

    @app.get("/v1/messages/{message_id}", tags=["messages"])
    async def get_message(message_id: str, who: Reader) -> dict[str, Any]:
        """A message with its status history."""
        return message_document(await messages.get(who.tenant, message_id))

    @app.get("/v1/conversations", tags=["conversations"])
    async def conversations(
        who: Reader,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        page = await messages.conversations(who.tenant, cursor, limit)
        return {"items": [_conversation(c) for c in page.items], "next_cursor": page.next_cursor}

    @app.get("/v1/conversations/{conversation_id}/messages", tags=["conversations"])
    async def conversation_messages(
        conversation_id: str,
        who: Reader,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """The conversation's messages in send order, a page at a time."""
        page = await messages.history(who.tenant, conversation_id, cursor, limit)
        return {"items": [message_document(m) for m in page.items], "next_cursor": page.next_cursor}

    if inbound is not None:

        @app.post("/v1/channels/telegram/{account}/webhook", tags=["channels"])
        async def telegram_webhook(
            account: str,
            request: Request,
            x_telegram_bot_api_secret_token: Annotated[str | None, Header()] = None,
        ) -> dict[str, bool]:
            """Where Telegram delivers updates (setWebhook with our secret_token)."""
            if not telegram_secret or not hmac.compare_digest(
                x_telegram_bot_api_secret_token or "", telegram_secret
            ):
                raise AuthError("wrong or missing X-Telegram-Bot-Api-Secret-Token")
            try:
                update = await request.json()
            except ValueError:
                raise InvalidRequest("the body is not JSON (a Bot API Update)") from None
            if not isinstance(update, dict):
                raise InvalidRequest("the body is not a Bot API Update object")
            await inbound.telegram_update(account, update)
            return {"ok": True}

    if bus is not None:

        @app.get("/v1/events", tags=["events"])
        async def events(who: Reader, request: Request) -> StreamingResponse:
            """Live events of the tenant as server-sent events (``message.status``,
            ``message.inbound``)."""

            async def stream() -> AsyncIterator[bytes]:
                yield b": connected\n\n"
                async for event in bus.subscribe(who.tenant):
                    if await request.is_disconnected():
                        return
                    payload = json.dumps(event.data, separators=(",", ":"))
                    yield f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

    if webhooks is not None:

        @app.post("/v1/subscriptions", status_code=201, tags=["webhooks"])
        async def subscribe(body: SubscriptionIn, who: Admin) -> dict[str, Any]:
            """Subscribe a URL to events; the signing secret is in this answer only."""
            sub, secret = await webhooks.subscribe(who.tenant, body.url, tuple(body.events))
            return {**asdict(sub), "secret": secret}

        @app.get("/v1/subscriptions", tags=["webhooks"])
        async def subscriptions(who: Admin) -> dict[str, Any]:
            return {"items": [asdict(s) for s in await webhooks.of(who.tenant)]}

        @app.delete("/v1/subscriptions/{subscription_id}", status_code=204, tags=["webhooks"])
        async def unsubscribe(subscription_id: str, who: Admin) -> Response:
            await webhooks.unsubscribe(who.tenant, subscription_id)
            return Response(status_code=204)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def is_ready() -> JSONResponse:
        try:
            ok = await ready()
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": f"{type(exc).__name__}: {exc}"}, 503)
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    return app
