"""The composition root of ``chat4all serve``: settings in, a running hub out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
import uvicorn
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from chat4all.adapters.channels.runtime import Channels, running_channels
from chat4all.adapters.storage.audit import AuditLog
from chat4all.adapters.storage.keys import KeyRing, Role
from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.webhooks import WebhookStore, fanout_many
from chat4all.config import Settings
from chat4all.domain.model import status_document
from chat4all.entrypoints.grpc_server import start_grpc
from chat4all.entrypoints.rest import create_app
from chat4all.entrypoints.services import Services
from chat4all.entrypoints.tls import Tls
from chat4all.errors import StoreUnavailable
from chat4all.metrics import HubMetrics
from chat4all.plugin import SIMULATOR_ACCOUNT
from chat4all.ports import OutboxItem
from chat4all.service_layer.access import Access
from chat4all.service_layer.dead_letters import DeadLetters
from chat4all.service_layer.dispatcher import Dispatcher, DispatchPolicy
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.messages import Messages
from chat4all.service_layer.webhooks import WebhookDispatcher
from chat4all.simulator.host import QuietServer
from chat4all.telemetry import tracer_for
from opskit.lifecycle import sleep_or_stop

__all__ = ["Hub", "running_hub", "open_store", "SIMULATOR_ACCOUNT"]

log = logging.getLogger(__name__)

_HOUSEKEEPING_EVERY: Final = 3600.0


@dataclass
class Hub:
    url: str
    store: SqlStore
    keys: KeyRing
    messages: Messages
    dispatcher: Dispatcher
    channels: Channels
    """Every channel's parts, its simulator among them on the embedded default."""
    admin_key: str | None
    """Created on first start of an empty database; shown once."""
    grpc_target: str
    """``host:port`` of the gRPC API."""
    bus: EventBus
    audit: AuditLog
    webhooks: WebhookStore
    media: MediaLibrary


async def open_store(settings: Settings) -> SqlStore:
    """The database of ``settings``, migrated; :class:`StoreUnavailable` says why it is not."""
    url = sa.make_url(settings.database_url)
    try:
        if url.get_backend_name() == "sqlite":
            settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        return await SqlStore.open(settings.database_url)
    except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:  # ImportError: no driver
        raise StoreUnavailable(
            f"cannot open or migrate the database {settings.database_shown}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; check "
            "CHAT4ALL_DATABASE_URL, that the server is up and that this user may write there"
        ) from None


async def _housekeeping(store: SqlStore, keep: float, stop: asyncio.Event) -> None:
    """Forget idempotency keys and provider update ids older than ``keep`` seconds, hourly."""
    while not stop.is_set():
        try:
            keys, updates = await store.purge(time.time() - keep)
        except Exception as exc:  # a busy database now is no reason to stop trying
            log.warning(
                "housekeeping failed (retrying in an hour): %s: %s", type(exc).__name__, exc
            )
        else:
            if keys or updates:
                log.info("forgot %d idempotency key(s) and %d update id(s)", keys, updates)
        await sleep_or_stop(stop, _HOUSEKEEPING_EVERY)


@contextlib.asynccontextmanager
async def running_hub(
    settings: Settings, stop: asyncio.Event, tracer: Tracer | None = None
) -> AsyncIterator[Hub]:
    """API, dispatcher (and, on the embedded default, the simulator) in this process. Spans go
    to ``tracer`` (tests pass one with an in-memory exporter), else as settings say."""
    # a bad certificate stops the start before anything else
    tls = (
        Tls(settings.TLS_CERT_FILE, settings.TLS_KEY_FILE)
        if settings.TLS_CERT_FILE is not None and settings.TLS_KEY_FILE is not None
        else None
    )
    store = await open_store(settings)
    store.fanout = fanout_many
    keys = KeyRing(store)
    webhooks = WebhookStore(store)
    media_store = FileMediaStore(store, settings.media_dir)
    media = MediaLibrary(media_store, settings.MEDIA_MAX_BYTES)
    admin_key = None
    if not await keys.list():
        admin_key, _ = await keys.create(settings.DEFAULT_TENANT, Role.ADMIN, "first admin key")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        if tracer is None:
            tracer, provider = tracer_for(settings.OTLP_ENDPOINT)
            if provider is not None:
                stack.callback(provider.shutdown)  # flushes what is still batched
                log.info("traces go to %s", settings.OTLP_ENDPOINT)
        channels = await stack.enter_async_context(running_channels(settings, media_store))
        metrics = HubMetrics(CollectorRegistry())
        bus = EventBus()

        def on_status(item: OutboxItem, status: str, detail: str | None) -> None:
            message = item.message
            bus.publish(message.tenant, "message.status", status_document(message, status, detail))

        dispatcher = Dispatcher(
            store,
            channels.connectors,
            DispatchPolicy(max_attempts=settings.MAX_ATTEMPTS, lease=settings.OUTBOX_LEASE),
            events=metrics,
            on_status=on_status,
            tracer=tracer,
        )
        messages = Messages(
            store,
            tracer=tracer,
            accounts=channels.accounts,
            media=media_store,
            limits=channels.limits,
        )
        inbound = Inbound(store, bus, channels.accounts, channels.receivers)

        async def refresh_gauges() -> None:
            metrics.outbox_depth.set(await store.depth())
            metrics.dead_letters.set(await store.dead_count())
            metrics.webhook_dead_letters.set(await webhooks.dead_count())

        workers: list[asyncio.Task[None]] = []

        async def ready() -> bool:
            """Ready: the database answers and every worker (dispatcher, webhooks) runs."""
            for task in workers:
                if task.done():
                    raise RuntimeError(f"the {task.get_name()} worker stopped; see the log")
            return await store.ready()

        audit = AuditLog(store)
        access = Access(keys, audit, per_key=settings.RATE_PER_KEY, global_=settings.RATE_GLOBAL)
        services = Services(
            messages=messages,
            access=access,
            accounts=channels.accounts,
            dead_letters=DeadLetters(store, dispatcher.wake),
            subscriptions=webhooks,
            inbound=inbound,
            bus=bus,
            media=media,
            wake=dispatcher.wake,
        )
        app = create_app(
            services, ready=ready, metrics=metrics, refresh_gauges=refresh_gauges, tracer=tracer
        )
        server = QuietServer(
            uvicorn.Config(
                app,
                host=settings.HOST,
                port=settings.PORT,
                log_level="warning",
                log_config=None,  # uvicorn's loggers go through ours: masked, JSON when asked
                lifespan="off",
                ssl_context_factory=tls.rest if tls is not None else None,
            )
        )
        grpc_server, grpc_port = await start_grpc(
            services,
            f"{settings.HOST}:{settings.GRPC_PORT}",
            metrics=metrics,
            tracer=tracer,
            credentials=tls.grpc() if tls is not None else None,
        )
        stack.push_async_callback(grpc_server.stop, 5)
        api = asyncio.create_task(server.serve(), name="rest")
        worker = asyncio.create_task(dispatcher.run(stop), name="dispatcher")
        hooks = asyncio.create_task(WebhookDispatcher(webhooks).run(stop), name="webhooks")
        keeper = asyncio.create_task(
            _housekeeping(store, settings.IDEMPOTENCY_HOURS * 3600.0, stop), name="housekeeping"
        )
        workers += [worker, hooks, keeper]
        pollers = [
            asyncio.create_task(poller.run(stop), name=poller.name)
            for poller in channels.pollers(inbound.received)
        ]
        try:
            while not server.started:
                if api.done():
                    await api
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"{'https' if tls else 'http'}://{settings.HOST}:{port}"
            grpc_target = f"{settings.HOST}:{grpc_port}"
            log.info(
                "chat4all API on %s/v1 (OpenAPI: %s/v1/openapi.json), gRPC on %s",
                url,
                url,
                grpc_target,
            )
            yield Hub(
                url,
                store,
                keys,
                messages,
                dispatcher,
                channels,
                admin_key,
                grpc_target,
                bus,
                audit,
                webhooks,
                media,
            )
        finally:
            server.should_exit = True
            stop.set()
            for poller in pollers:  # parked in a long poll: nothing to finish
                poller.cancel()
            await asyncio.gather(api, worker, hooks, keeper, *pollers, return_exceptions=True)
