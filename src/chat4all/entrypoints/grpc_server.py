"""gRPC API (``proto/chat4all/grpc_api/v1/messages.proto``), with health and reflection.

The servicer only translates: it parses the request, calls the same use case as REST, and maps
:mod:`chat4all.errors` to status codes (the table is in the .proto file's header).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import Tracer

from chat4all.adapters.storage.keys import Principal
from chat4all.domain.model import (
    Attachment,
    Button,
    Content,
    Conversation,
    Location,
    Message,
    Template,
)
from chat4all.errors import (
    AuthError,
    Chat4AllError,
    IdempotencyConflict,
    IdempotencyInFlight,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from chat4all.grpc_api.v1 import messages_pb2 as pb
from chat4all.grpc_api.v1 import messages_pb2_grpc as pb_grpc
from chat4all.metrics import HubMetrics
from chat4all.ports import SendRequest
from chat4all.service_layer.access import Access
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.media import MIB, MediaLibrary
from chat4all.service_layer.messages import Messages
from chat4all.telemetry import NO_TRACER, failed, request_id_from, request_scope

__all__ = ["start_grpc", "SERVICE_NAME"]

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Messages"].full_name
_CODES: Final = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    IdempotencyConflict: grpc.StatusCode.FAILED_PRECONDITION,
    IdempotencyInFlight: grpc.StatusCode.ALREADY_EXISTS,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AuthError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_CHANNELS: Final = {
    # the v1 contract's enum, until channels are strings there
    pb.TELEGRAM: "telegram",
    pb.WHATSAPP: "whatsapp",
    pb.MESSENGER: "messenger",
    pb.INSTAGRAM: "instagram",
}
_CHANNEL_IDS: Final = {v: k for k, v in _CHANNELS.items()}


class _Servicer(pb_grpc.MessagesServicer):
    def __init__(
        self,
        messages: Messages,
        access: Access,
        on_accepted: Any = None,
        bus: EventBus | None = None,
        metrics: HubMetrics | None = None,
        tracer: Tracer = NO_TRACER,
        media: MediaLibrary | None = None,
    ) -> None:
        self._messages = messages
        self._access = access
        self._on_accepted = on_accepted
        self._bus = bus
        self._media = media
        self._metrics = metrics
        self._tracer = tracer

    @contextlib.asynccontextmanager
    async def _rpc(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """One call: a server span continuing the caller's ``traceparent`` metadata, a request
        id (``x-request-id`` metadata or a new one, sent back in the trailers and bound to the
        logs), metrics, and domain errors mapped to status codes (abort raises)."""
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        request_id = request_id_from(metadata.get("x-request-id"))
        trailers = (("x-request-id", request_id),)
        context.set_trailing_metadata(trailers)
        began = time.perf_counter()
        code = grpc.StatusCode.OK
        with request_scope(
            self._tracer,
            f"{SERVICE_NAME}/{method}",
            metadata,
            request_id,
            **{"rpc.system": "grpc", "rpc.method": method},
        ) as span:
            try:
                yield
            except Chat4AllError as exc:
                code = next(
                    (c for k, c in _CODES.items() if isinstance(exc, k)), grpc.StatusCode.INTERNAL
                )
                if code is grpc.StatusCode.INTERNAL:
                    failed(span, str(exc))
                field = getattr(exc, "field", None)
                await context.abort(code, f"{field}: {exc}" if field else str(exc), trailers)
            except BaseException:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if self._metrics is not None:
                    self._metrics.rpcs.labels(method, code.name).inc()
                    self._metrics.rpc_latency.labels(method).observe(time.perf_counter() - began)

    async def _who(self, context: grpc.aio.ServicerContext, action: str) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        presented = metadata.get("x-api-key")
        auth = metadata.get("authorization", "")
        if isinstance(auth, str) and auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
        return await self._access.authorize(
            presented if isinstance(presented, str) else None, action
        )

    async def Send(
        self, request: pb.SendRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendReply:
        async with self._rpc(context, "Send"):
            who = await self._who(context, "send")
            channel = _CHANNELS.get(request.channel)
            if channel is None:
                raise InvalidRequest(
                    "channel is required (TELEGRAM, WHATSAPP ...)", field="channel"
                )
            send = SendRequest(
                channel, request.account, request.recipient, _content(request.content)
            )
            key = request.idempotency_key if request.HasField("idempotency_key") else None
            accepted = await self._messages.send(who.tenant, send, key)
            if self._on_accepted is not None and not accepted.replayed:
                self._on_accepted()
            return pb.SendReply(message=_message(accepted.message), replayed=accepted.replayed)
        raise AssertionError("unreachable")

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Message:
        async with self._rpc(context, "GetMessage"):
            who = await self._who(context, "read")
            return _message(await self._messages.get(who.tenant, request.id))
        raise AssertionError("unreachable")

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversationsReply:
        async with self._rpc(context, "ListConversations"):
            who = await self._who(context, "read")
            page = await self._messages.conversations(
                who.tenant,
                request.cursor if request.HasField("cursor") else None,
                request.limit or 50,
            )
            return pb.ListConversationsReply(
                items=[_conversation(c) for c in page.items], next_cursor=page.next_cursor
            )
        raise AssertionError("unreachable")

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesReply:
        async with self._rpc(context, "ListMessages"):
            who = await self._who(context, "read")
            page = await self._messages.history(
                who.tenant,
                request.conversation_id,
                request.cursor if request.HasField("cursor") else None,
                request.limit or 50,
            )
            return pb.ListMessagesReply(
                items=[_message(m) for m in page.items], next_cursor=page.next_cursor
            )
        raise AssertionError("unreachable")

    async def UploadMedia(
        self, request: pb.UploadMediaRequest, context: grpc.aio.ServicerContext
    ) -> pb.Media:
        async with self._rpc(context, "UploadMedia"):
            who = await self._who(context, "send")
            if self._media is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "uploads are off")
            assert self._media is not None
            stored = await self._media.upload(
                who.tenant,
                _once(request.data),
                request.filename or None,
                request.mime_type if request.HasField("mime_type") else None,
                request.kind or None,
            )
            return pb.Media(
                id=stored.id,
                filename=stored.filename,
                mime_type=stored.mime_type,
                size=stored.size,
                sha256=stored.sha256,
                kind=stored.kind,
            )
        raise AssertionError("unreachable")

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Event]:
        async with self._rpc(context, "StreamEvents"):
            who = await self._who(context, "read")
        if self._bus is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "live events are off")
            return
        async for event in self._bus.subscribe(who.tenant):
            yield pb.Event(
                id=event.id,
                type=event.type,
                data_json=json.dumps(event.data, separators=(",", ":")),
                at=event.at,
            )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _content(c: pb.Content) -> Content:
    return Content(
        text=c.text if c.HasField("text") else None,
        attachments=tuple(
            Attachment(
                a.url or None,
                a.kind or None,
                a.filename if a.HasField("filename") else None,
                a.mime_type if a.HasField("mime_type") else None,
                a.caption if a.HasField("caption") else None,
                a.media_id if a.HasField("media_id") else None,
            )
            for a in c.attachments
        ),
        location=(
            Location(c.location.latitude, c.location.longitude, c.location.name or None)
            if c.HasField("location")
            else None
        ),
        reply_to=c.reply_to if c.HasField("reply_to") else None,
        template=(
            Template(c.template.name, c.template.language, tuple(c.template.parameters))
            if c.HasField("template")
            else None
        ),
        buttons=tuple(
            Button(
                b.title,
                b.payload if b.HasField("payload") else None,
                b.url if b.HasField("url") else None,
            )
            for b in c.buttons
        ),
        extensions=tuple(sorted(c.extensions.items())),
    )


def _content_pb(c: Content) -> pb.Content:
    out = pb.Content(
        attachments=[
            pb.Attachment(
                url=a.url,
                kind=a.kind,
                filename=a.filename,
                mime_type=a.mime_type,
                caption=a.caption,
                media_id=a.media_id,
            )
            for a in c.attachments
        ],
        buttons=[pb.Button(title=b.title, payload=b.payload, url=b.url) for b in c.buttons],
        extensions=dict(c.extensions),
    )
    if c.text is not None:
        out.text = c.text
    if c.location is not None:
        out.location.CopyFrom(
            pb.Location(
                latitude=c.location.latitude, longitude=c.location.longitude, name=c.location.name
            )
        )
    if c.reply_to is not None:
        out.reply_to = c.reply_to
    if c.template is not None:
        out.template.CopyFrom(
            pb.Template(
                name=c.template.name, language=c.template.language, parameters=c.template.parameters
            )
        )
    return out


def _message(m: Message) -> pb.Message:
    return pb.Message(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        direction=m.direction,
        content=_content_pb(m.content),
        status=m.status.value,
        created_at=m.created_at,
        provider_message_id=m.provider_message_id,
        history=[
            pb.StatusEvent(status=e.status.value, at=e.at, detail=e.detail) for e in m.history
        ],
    )


def _conversation(c: Conversation) -> pb.Conversation:
    return pb.Conversation(
        id=c.id,
        channel=_CHANNEL_IDS.get(c.channel, 0),  # type: ignore[arg-type]
        account=c.account,
        recipient=c.recipient,
        last_message_at=c.last_message_at,
    )


async def start_grpc(
    messages: Messages,
    access: Access,
    address: str,
    on_accepted: Any = None,
    bus: EventBus | None = None,
    metrics: HubMetrics | None = None,
    tracer: Tracer = NO_TRACER,
    media: MediaLibrary | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve the API, ``grpc.health.v1`` and reflection on ``address``; returns the bound port.

    A request may be as large as the largest upload plus 1 MB (gRPC's default is 4 MB), so an
    UploadMedia over the limit reaches the use case and is refused as REST refuses it."""
    options = [] if media is None else [("grpc.max_receive_message_length", media.max_bytes + MIB)]
    server = grpc.aio.server(options=options)
    pb_grpc.add_MessagesServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(messages, access, on_accepted, bus, metrics, tracer, media), server
    )
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    await checker.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port
