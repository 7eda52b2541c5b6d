"""The composition root of ``chat4all serve``: settings in, a running hub out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import uvicorn
from prometheus_client import CollectorRegistry

from chat4all.adapters.channels.telegram import TelegramConnector, TelegramPoller
from chat4all.adapters.storage.audit import AuditLog
from chat4all.adapters.storage.keys import KeyRing, Role
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.webhooks import WebhookStore, fanout_many
from chat4all.config import Settings
from chat4all.domain.model import Channel
from chat4all.entrypoints.grpc_server import start_grpc
from chat4all.entrypoints.rest import create_app
from chat4all.metrics import HubMetrics
from chat4all.ports import OutboxItem
from chat4all.service_layer.access import Access
from chat4all.service_layer.dispatcher import Dispatcher, DispatchPolicy
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.messages import Messages
from chat4all.service_layer.webhooks import WebhookDispatcher
from chat4all.simulator.telegram import QuietServer, TelegramSimulator
from opskit.logs import MASKER

__all__ = ["Hub", "running_hub", "SIMULATOR_ACCOUNT", "SIMULATOR_TOKEN"]

log = logging.getLogger(__name__)

SIMULATOR_ACCOUNT: Final = "sim-bot"
SIMULATOR_TOKEN: Final = "100000:simulated-bot-token-for-the-embedded-default"


@dataclass
class Hub:
    url: str
    store: SqlStore
    keys: KeyRing
    messages: Messages
    dispatcher: Dispatcher
    simulator: TelegramSimulator | None
    admin_key: str | None
    grpc_target: str
    """``host:port`` of the gRPC API."""
    bus: EventBus
    telegram_secret: str
    audit: AuditLog
    webhooks: WebhookStore
    """What Telegram (or the simulator) must send in X-Telegram-Bot-Api-Secret-Token."""
    """Created on first start of an empty database; shown once."""


@contextlib.asynccontextmanager
async def running_hub(settings: Settings, stop: asyncio.Event) -> AsyncIterator[Hub]:
    """API, dispatcher (and, on the embedded default, the simulator) in this process."""
    if settings.database_url.startswith("sqlite"):
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    store = await SqlStore.open(settings.database_url)
    store.fanout = fanout_many
    keys = KeyRing(store)
    webhooks = WebhookStore(store)
    admin_key = None
    if not await keys.list():
        admin_key, _ = await keys.create(settings.DEFAULT_TENANT, Role.ADMIN, "first admin key")
    telegram_secret = (
        settings.TELEGRAM_WEBHOOK_SECRET.get_secret_value()
        if settings.TELEGRAM_WEBHOOK_SECRET is not None
        else secrets.token_urlsafe(24)
    )
    MASKER.add(telegram_secret)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        simulator: TelegramSimulator | None = None
        api_url = settings.TELEGRAM_API_URL
        tokens = {k: v.get_secret_value() for k, v in settings.TELEGRAM_BOTS.items()}
        if settings.embedded_simulator:
            simulator = TelegramSimulator(tokens={SIMULATOR_TOKEN})
            api_url = await stack.enter_async_context(
                simulator.running(port=settings.SIMULATOR_PORT)
            )
            tokens = {SIMULATOR_ACCOUNT: SIMULATOR_TOKEN}
            log.info("Telegram simulator on %s (account %r)", api_url, SIMULATOR_ACCOUNT)
        telegram = TelegramConnector(tokens, api_url=api_url)
        stack.push_async_callback(telegram.close)
        metrics = HubMetrics(CollectorRegistry())
        bus = EventBus()

        def on_status(item: OutboxItem, status: str, detail: str | None) -> None:
            message = item.message
            bus.publish(
                message.tenant,
                "message.status",
                {
                    "id": message.id,
                    "conversation_id": message.conversation_id,
                    "status": status,
                    "detail": detail,
                },
            )

        dispatcher = Dispatcher(
            store,
            {Channel.TELEGRAM: telegram},
            DispatchPolicy(max_attempts=settings.MAX_ATTEMPTS),
            events=metrics,
            on_status=on_status,
        )
        messages = Messages(store)
        inbound = Inbound(store, bus, lambda _channel, _account: settings.DEFAULT_TENANT)

        async def refresh_gauges() -> None:
            metrics.outbox_depth.set(await store.depth())
            metrics.dead_letters.set(await store.dead_count())
            metrics.webhook_dead_letters.set(await webhooks.dead_count())

        audit = AuditLog(store)
        access = Access(keys, audit, per_key=settings.RATE_PER_KEY, global_=settings.RATE_GLOBAL)
        app = create_app(
            messages,
            access,
            store.ready,
            on_accepted=dispatcher.wake,
            metrics=metrics,
            refresh_gauges=refresh_gauges,
            dead_letters=store,
            inbound=inbound,
            bus=bus,
            telegram_secret=telegram_secret,
            webhooks=webhooks,
        )
        server = QuietServer(
            uvicorn.Config(
                app, host=settings.HOST, port=settings.PORT, log_level="warning", lifespan="off"
            )
        )
        grpc_server, grpc_port = await start_grpc(
            messages,
            access,
            f"{settings.HOST}:{settings.GRPC_PORT}",
            on_accepted=dispatcher.wake,
            bus=bus,
        )
        stack.push_async_callback(grpc_server.stop, 5)
        api = asyncio.create_task(server.serve(), name="rest")
        worker = asyncio.create_task(dispatcher.run(stop), name="dispatcher")
        hooks = asyncio.create_task(WebhookDispatcher(webhooks).run(stop), name="webhooks")
        pollers = [
            asyncio.create_task(
                TelegramPoller(account, token, inbound.telegram_update, api_url=api_url).run(stop),
                name=f"telegram-poll-{account}",
            )
            for account, token in (tokens.items() if settings.TELEGRAM_POLLING else ())
        ]
        try:
            while not server.started:
                if api.done():
                    await api
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://{settings.HOST}:{port}"
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
                simulator,
                admin_key,
                grpc_target,
                bus,
                telegram_secret,
                audit,
                webhooks,
            )
        finally:
            server.should_exit = True
            stop.set()
            for poller in pollers:  # parked in a long poll: nothing to finish
                poller.cancel()
            await asyncio.gather(api, worker, hooks, *pollers, return_exceptions=True)
