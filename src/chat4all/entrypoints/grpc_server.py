"""gRPC API (``proto/chat4all/v1/api.proto``), with health and reflection.

The servicer only translates: it parses the request, calls the same use case as REST, and maps
:mod:`chat4all.errors` to status codes from the same table as REST
(:mod:`chat4all.entrypoints.error_codes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import Tracer

from chat4all.domain.access import Principal
from chat4all.entrypoints.error_codes import answer_for, retry_after_of
from chat4all.entrypoints.grpc_codec import (
    chunks_of,
    content_of,
    conversation_pb,
    media_pb,
    message_pb,
    once,
    subscription_pb,
    upload_pb,
)
from chat4all.entrypoints.services import Services
from chat4all.errors import Chat4AllError, InvalidRequest, NotFound
from chat4all.metrics import HubMetrics
from chat4all.ports import SendRequest
from chat4all.service_layer.channel_accounts import ChannelAccounts
from chat4all.service_layer.events import Event
from chat4all.service_layer.media import MIB
from chat4all.service_layer.readiness import Report
from chat4all.service_layer.tenants import oversize_of
from chat4all.telemetry import NO_TRACER, failed, request_id_from, request_scope
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc

__all__ = ["start_grpc", "SERVICE_NAME"]

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Chat4AllService"].full_name


class _Answers:
    """The ``StreamEvents`` answer of the event last built: the bus hands the same
    :class:`Event` object to every stream of the tenant, so it is built once, not once per
    stream."""

    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.answer = pb.StreamEventsResponse()

    def __call__(self, event: Event) -> pb.StreamEventsResponse:
        if event is not self.event:
            self.answer = pb.StreamEventsResponse(
                event=pb.Event(
                    id=event.id,
                    type=event.type,
                    data_json=json.dumps(event.data, separators=(",", ":")),
                    at=event.at,
                )
            )
            self.event = event
        return self.answer


_answer = _Answers()
HEALTH_REFRESH: Final = 5.0
"""Seconds between readiness checks for ``grpc.health.v1`` watchers (a Check asks at once)."""


class _ReadinessHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1`` that answers what ``/ready`` answers: NOT_SERVING while a required
    readiness check fails (a task down, the database), for the whole server (``""``) and the
    API alike.

    A Check asks ``ready`` there and then; Watch streams see a change within
    ``HEALTH_REFRESH`` seconds (or at once, when a Check saw it first)."""

    def __init__(self, ready: Callable[[], Awaitable[Report]]) -> None:
        super().__init__()
        self._ready = ready

    async def refresh(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if (await self._ready()).ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self.set(service, status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def refresh_until(self, server: grpc.aio.Server) -> None:
        stopped = asyncio.ensure_future(server.wait_for_termination())
        try:
            while not stopped.done():
                await self.refresh()
                await asyncio.wait({stopped}, timeout=HEALTH_REFRESH)
        finally:
            stopped.cancel()


class _Servicer(pb_grpc.Chat4AllServiceServicer):
    def __init__(
        self, services: Services, metrics: HubMetrics | None = None, tracer: Tracer = NO_TRACER
    ) -> None:
        self._use = services
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
                code = answer_for(exc).grpc_code
                if code is grpc.StatusCode.INTERNAL:
                    failed(span, str(exc))
                field = getattr(exc, "field", None)
                retry_after = retry_after_of(exc)
                told = (
                    trailers
                    if retry_after is None
                    else (*trailers, ("retry-after", str(retry_after)))
                )
                await context.abort(code, f"{field}: {exc}" if field else str(exc), told)
            except asyncio.CancelledError:  # the client went away (or cancelled the call)
                code = grpc.StatusCode.CANCELLED
                raise
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
        return await self._use.access.authorize(
            presented if isinstance(presented, str) else None, action
        )

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendMessageResponse:
        async with self._rpc(context, "SendMessage"):
            who = await self._who(context, "send")
            if not request.channel:
                raise InvalidRequest(
                    "channel is required (ListChannels lists the channels)", field="channel"
                )
            channel = self._use.accounts.known(request.channel)
            send = SendRequest(
                channel,
                request.account,
                request.recipient,
                content_of(request.content),
                oversize_of(request.oversize) if request.HasField("oversize") else None,
            )
            key = request.idempotency_key if request.HasField("idempotency_key") else None
            accepted = await self._use.messages.send(who.tenant, send, key)
            if self._use.wake is not None and not accepted.replayed:
                self._use.wake()
            return pb.SendMessageResponse(
                message=message_pb(accepted.message), replayed=accepted.replayed
            )
        raise AssertionError("unreachable")

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessageResponse:
        async with self._rpc(context, "GetMessage"):
            who = await self._who(context, "read")
            message = await self._use.messages.get(who.tenant, request.id)
            return pb.GetMessageResponse(message=message_pb(message))
        raise AssertionError("unreachable")

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversationsResponse:
        async with self._rpc(context, "ListConversations"):
            who = await self._who(context, "read")
            page = await self._use.messages.conversations(
                who.tenant,
                request.cursor if request.HasField("cursor") else None,
                request.limit or 50,
            )
            return pb.ListConversationsResponse(
                items=[conversation_pb(c) for c in page.items], next_cursor=page.next_cursor
            )
        raise AssertionError("unreachable")

    async def ListConversationMessages(
        self, request: pb.ListConversationMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversationMessagesResponse:
        async with self._rpc(context, "ListConversationMessages"):
            who = await self._who(context, "read")
            page = await self._use.messages.history(
                who.tenant,
                request.conversation_id,
                request.cursor if request.HasField("cursor") else None,
                request.limit or 50,
            )
            return pb.ListConversationMessagesResponse(
                items=[message_pb(m) for m in page.items], next_cursor=page.next_cursor
            )
        raise AssertionError("unreachable")

    async def UploadMedia(
        self, request: pb.UploadMediaRequest, context: grpc.aio.ServicerContext
    ) -> pb.UploadMediaResponse:
        async with self._rpc(context, "UploadMedia"):
            who = await self._who(context, "send")
            stored = await self._use.media.upload(
                who.tenant,
                once(request.data),
                request.filename or None,
                request.mime_type if request.HasField("mime_type") else None,
                request.kind or None,
            )
            return pb.UploadMediaResponse(media=media_pb(stored))
        raise AssertionError("unreachable")

    async def CreateUpload(
        self, request: pb.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateUploadResponse:
        async with self._rpc(context, "CreateUpload"):
            who = await self._who(context, "send")
            staged = await self._use.media.create_upload(
                who.tenant,
                request.size,
                request.filename or None,
                request.mime_type if request.HasField("mime_type") else None,
                request.kind or None,
                request.sha256 if request.HasField("sha256") else None,
            )
            return pb.CreateUploadResponse(upload=upload_pb(staged, 0))
        raise AssertionError("unreachable")

    async def GetUpload(
        self, request: pb.GetUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUploadResponse:
        async with self._rpc(context, "GetUpload"):
            who = await self._who(context, "send")
            staged, offset = await self._use.media.upload_offset(who.tenant, request.upload_id)
            return pb.GetUploadResponse(upload=upload_pb(staged, offset))
        raise AssertionError("unreachable")

    async def AppendUpload(
        self,
        request_iterator: AsyncIterator[pb.AppendUploadRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.AppendUploadResponse:
        async with self._rpc(context, "AppendUpload"):
            who = await self._who(context, "send")
            requests = aiter(request_iterator)
            first = await anext(requests, None)
            if first is None or not first.upload_id:
                raise InvalidRequest(
                    "the first message names the upload (and its offset, from GetUpload)",
                    field="upload_id",
                )
            offset = await self._use.media.append(
                who.tenant, first.upload_id, first.offset, chunks_of(first, requests)
            )
            return pb.AppendUploadResponse(offset=offset)
        raise AssertionError("unreachable")

    async def CompleteUpload(
        self, request: pb.CompleteUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteUploadResponse:
        async with self._rpc(context, "CompleteUpload"):
            who = await self._who(context, "send")
            media = await self._use.media.finish(who.tenant, request.upload_id)
            return pb.CompleteUploadResponse(media=media_pb(media))
        raise AssertionError("unreachable")

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        async with self._rpc(context, "StreamEvents"):
            who = await self._who(context, "read")
        after = request.resume_token if request.HasField("resume_token") else None
        async for event in self._use.events.follow(who.tenant, after):
            yield _answer(event)

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        async with self._rpc(context, "ListDeadLetters"):
            who = await self._who(context, "admin")
            page = await self._use.dead_letters.list(
                who.tenant,
                request.cursor if request.HasField("cursor") else None,
                request.limit or 50,
            )
            return pb.ListDeadLettersResponse(
                items=[
                    pb.DeadLetter(message=message_pb(d.message), error=d.error) for d in page.items
                ],
                next_cursor=page.next_cursor,
            )
        raise AssertionError("unreachable")

    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        async with self._rpc(context, "ReplayDeadLetter"):
            who = await self._who(context, "admin")
            message = await self._use.dead_letters.replay(who.tenant, request.message_id)
            return pb.ReplayDeadLetterResponse(message=message_pb(message))
        raise AssertionError("unreachable")

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSubscriptionResponse:
        async with self._rpc(context, "CreateSubscription"):
            who = await self._who(context, "admin")
            sub, secret = await self._use.subscriptions.subscribe(
                who.tenant, request.url, tuple(request.events)
            )
            return pb.CreateSubscriptionResponse(subscription=subscription_pb(sub), secret=secret)
        raise AssertionError("unreachable")

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSubscriptionsResponse:
        async with self._rpc(context, "ListSubscriptions"):
            who = await self._who(context, "admin")
            subs = await self._use.subscriptions.of(who.tenant)
            return pb.ListSubscriptionsResponse(items=[subscription_pb(s) for s in subs])
        raise AssertionError("unreachable")

    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSubscriptionResponse:
        async with self._rpc(context, "DeleteSubscription"):
            who = await self._who(context, "admin")
            await self._use.subscriptions.unsubscribe(who.tenant, request.subscription_id)
            return pb.DeleteSubscriptionResponse()
        raise AssertionError("unreachable")

    async def ConversationAction(
        self, request: pb.ConversationActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConversationActionResponse:
        async with self._rpc(context, "ConversationAction"):
            who = await self._who(context, "send")
            await self._use.actions.act(who.tenant, request.conversation_id, request.action)
            return pb.ConversationActionResponse()
        raise AssertionError("unreachable")

    async def GetSettings(
        self, request: pb.GetSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSettingsResponse:
        async with self._rpc(context, "GetSettings"):
            who = await self._who(context, "admin")
            settings = await self._use.tenants.settings(who.tenant)
            return pb.GetSettingsResponse(settings=pb.Settings(oversize=settings.oversize.value))
        raise AssertionError("unreachable")

    async def UpdateSettings(
        self, request: pb.UpdateSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateSettingsResponse:
        async with self._rpc(context, "UpdateSettings"):
            who = await self._who(context, "admin")
            oversize = request.oversize if request.HasField("oversize") else None
            settings = await self._use.tenants.update(who.tenant, oversize, actor=who.key_id)
            return pb.UpdateSettingsResponse(settings=pb.Settings(oversize=settings.oversize.value))
        raise AssertionError("unreachable")

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChannelsResponse:
        async with self._rpc(context, "ListChannels"):
            who = await self._who(context, "read")
            accounts = self._use.accounts
            mine = accounts.of(who.tenant)
            return pb.ListChannelsResponse(
                items=[
                    pb.Channel(
                        name=name,
                        accounts=mine.get(name, ()),
                        **self._use.messages.capabilities(name),
                    )
                    for name in accounts.channels()
                ]
            )
        raise AssertionError("unreachable")

    async def ListChannelAccounts(
        self, request: pb.ListChannelAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChannelAccountsResponse:
        async with self._rpc(context, "ListChannelAccounts"):
            who = await self._who(context, "admin")
            states = self._channel_accounts().states(who.tenant, request.channel)
            return pb.ListChannelAccountsResponse(
                items=[
                    pb.ChannelAccount(name=s.name, paused=s.paused, reason=s.reason) for s in states
                ]
            )
        raise AssertionError("unreachable")

    async def ResumeChannelAccount(
        self, request: pb.ResumeChannelAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeChannelAccountResponse:
        async with self._rpc(context, "ResumeChannelAccount"):
            who = await self._who(context, "admin")
            token = request.access_token if request.HasField("access_token") else None
            state = await self._channel_accounts().resume(
                who, request.channel, request.account, token or None
            )
            return pb.ResumeChannelAccountResponse(
                account=pb.ChannelAccount(name=state.name, paused=state.paused),
                released=state.released,
            )
        raise AssertionError("unreachable")

    def _channel_accounts(self) -> ChannelAccounts:
        if self._use.channel_accounts is None:
            raise NotFound("channel accounts are not managed by this hub")
        return self._use.channel_accounts


async def start_grpc(
    services: Services,
    address: str,
    *,
    ready: Callable[[], Awaitable[Report]],
    metrics: HubMetrics | None = None,
    tracer: Tracer = NO_TRACER,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve the API, ``grpc.health.v1`` (SERVING when ``ready`` says so, as ``/ready``) and
    reflection on ``address``; returns the bound port.

    A request may be as large as the largest upload plus 1 MB (gRPC's default is 4 MB), so an
    UploadMedia over the limit reaches the use case and is refused as REST refuses it."""
    # gRPC takes a C int here: an upload limit near 2 GiB would overflow it and stop the hub.
    options = [("grpc.max_receive_message_length", min(services.media.max_bytes + MIB, 2**31 - 1))]
    server = grpc.aio.server(options=options)
    pb_grpc.add_Chat4AllServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(services, metrics, tracer), server
    )
    checker = _ReadinessHealth(ready)
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
    await checker.refresh()
    refresher = asyncio.create_task(checker.refresh_until(server), name="grpc-health")
    _REFRESHERS.add(refresher)
    refresher.add_done_callback(_REFRESHERS.discard)
    return server, port


_REFRESHERS: set[asyncio.Task[None]] = set()
"""Strong references to the health refreshers (each ends when its server terminates)."""
