"""The composition root: settings in, a wired hub out (:func:`build_hub`), and its roles run.

:func:`build_hub` wires everything (store, use cases, connectors, bus, rate limiter and
idempotency cache (:func:`shared_state`), wake-up, status publisher, metrics, tracer, workers)
and opens no socket and starts no task: it only opens the database (and a Redis client, which
connects on first use). :func:`run_roles` starts some of its roles under the hub's
:class:`~chat4all.service_layer.supervisor.Supervisor`:

- ``simulator``: the channels' simulators (on the embedded default: no account configured);
- ``api``: the REST and gRPC servers;
- ``workers``: the dispatcher, the webhook dispatcher and the sweep of received messages left
  unannounced (``inbound-files``; and any worker a test injects);
- ``pollers``: the channels' pollers (those their settings ask for);
- ``relay``: with ``CHAT4ALL_NATS_URL``, the outbox relayed to the partitioned log
  (:class:`~chat4all.service_layer.relay.Relay`; nothing to do without it);
- ``housekeeping``: the hourly purge of old idempotency keys, update ids and live events, and of
  unfinished uploads past their time to live (:func:`housekeep`);
- ``probes``: ``/health``, ``/ready`` and ``/metrics`` alone on ``CHAT4ALL_PORT``, for a process
  without the ``api`` role (whose REST server has them already).

:func:`running_hub` runs some of them in this process: :data:`ROLES` (all but ``probes``) is
``chat4all serve``, :data:`API_ROLES` ``chat4all api`` and :data:`WORKER_ROLES` ``chat4all
worker``. The ``api`` role also measures the backlog for load shedding
(:mod:`chat4all.service_layer.shedding`); the ``workers`` role exports the database-wide
gauges. Tests inject fakes through the overrides of :func:`build_hub` (a tracer, a clock,
connectors, an httpx transport for webhooks, a resolver, extra workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

import httpx
import sqlalchemy as sa
import uvicorn
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from typing_extensions import Unpack

from chat4all.adapters.channels.runtime import Channels, build_channels
from chat4all.adapters.log.jetstream import JetStreamLog, NatsWakeup, connect
from chat4all.adapters.storage.audit import AuditLog
from chat4all.adapters.storage.engine import PostgresLimits
from chat4all.adapters.storage.keys import KeyRing, Role
from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.partitions import SqlPartitionLeases
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.tenants import SqlTenantSettings
from chat4all.adapters.storage.uploads import FileUploads
from chat4all.adapters.storage.webhooks import WebhookStore, fanout_many
from chat4all.config import Settings
from chat4all.domain.lease import worker_id
from chat4all.entrypoints.grpc_server import start_grpc
from chat4all.entrypoints.rest import create_app, create_probes_app
from chat4all.entrypoints.services import Services
from chat4all.entrypoints.tls import Tls
from chat4all.errors import InvalidRequest, StoreUnavailable
from chat4all.metrics import HubMetrics
from chat4all.plugin import SIMULATOR_ACCOUNT
from chat4all.ports import Connector, MediaStore, MessageLog, UploadStaging
from chat4all.service_layer.access import Access, LocalRateLimiter, RateLimiter
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.actions import Actions
from chat4all.service_layer.channel_accounts import ChannelAccounts
from chat4all.service_layer.dead_letters import DeadLetters
from chat4all.service_layer.dispatcher import Dispatcher, DispatchPolicy
from chat4all.service_layer.events import EventBus, LiveEvents, LiveStreams
from chat4all.service_layer.idempotency import CachedReplays, IdempotencyCache, NoIdempotencyCache
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.log_dispatch import LogQueue, PartitionOwner
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.media_links import MediaLinks
from chat4all.service_layer.messages import Messages
from chat4all.service_layer.readiness import Readiness, Report
from chat4all.service_layer.relay import Relay
from chat4all.service_layer.shedding import LoadShedder, ShedPolicy
from chat4all.service_layer.status import StatusPublisher
from chat4all.service_layer.subscriptions import Subscriptions
from chat4all.service_layer.supervisor import Supervisor
from chat4all.service_layer.targets import Resolver, TargetPolicy, resolve
from chat4all.service_layer.tenants import Tenants
from chat4all.service_layer.wakeup import LocalWakeup, Wakeup
from chat4all.service_layer.webhooks import WebhookDispatcher
from chat4all.simulator.host import QuietServer
from chat4all.telemetry import tracer_for
from opskit.lifecycle import sleep_or_stop

__all__ = [
    "Hub",
    "Overrides",
    "Injected",
    "Worker",
    "ROLES",
    "API_ROLES",
    "WORKER_ROLES",
    "RELAY_ROLES",
    "build_hub",
    "run_roles",
    "running_hub",
    "open_store",
    "open_media_store",
    "shared_state",
    "reload_settings",
    "SIMULATOR_ACCOUNT",
]

log = logging.getLogger(__name__)

_HOUSEKEEPING_EVERY: Final = 3600.0
ROLES: Final = ("simulator", "api", "workers", "pollers", "relay", "housekeeping")
"""``chat4all serve``: everything in one process."""
API_ROLES: Final = ("api",)
"""``chat4all api``: REST and gRPC only (and the load shedding's measurement)."""
WORKER_ROLES: Final = ("simulator", "workers", "pollers", "housekeeping", "probes")
"""``chat4all worker``: everything but the APIs and the relay, with the probes' HTTP server
(the simulators, on a hub with no channel account, are what its workers deliver to)."""
RELAY_ROLES: Final = ("relay", "probes")
"""``chat4all relay``: the relay alone (with ``CHAT4ALL_NATS_URL``), with the probes' HTTP
server (its published and republished counters are scraped there)."""

Worker = Callable[[asyncio.Event], Awaitable[None]]
"""A long-running job: runs until the event is set (a worker's ``run``)."""


class Injected(TypedDict, total=False):
    """What a test (or a later entry point) may put in place of the settings' choice."""

    tracer: Tracer
    clock: Callable[[], float]
    """Wall clock of the workers, the inbound use case, the media library (links, uploads'
    expiry) and the supervisor."""
    connectors: Mapping[str, Connector]
    """Instead of the configured channels' connectors."""
    webhook_transport: httpx.AsyncBaseTransport
    resolver: Resolver
    """How a webhook's host is resolved before delivery."""
    workers: Mapping[str, Worker]
    """More workers for the ``workers`` role, by name."""


class Overrides(Injected, total=False):
    stop: asyncio.Event
    """The event that stops the roles (default: a new one; ``chat4all serve`` sets it on
    SIGTERM)."""


@dataclass
class Hub:
    settings: Settings
    store: SqlStore
    keys: KeyRing
    audit: AuditLog
    accounts: Accounts
    messages: Messages
    inbound: Inbound
    media: MediaLibrary
    webhooks: WebhookStore
    subscriptions: Subscriptions
    bus: LiveEvents
    publisher: StatusPublisher
    limiter: RateLimiter
    access: Access
    services: Services
    """The use cases, as the REST and gRPC entrypoints take them."""
    wakeup: Wakeup
    metrics: HubMetrics
    tracer: Tracer
    dispatcher: Dispatcher
    webhook_dispatcher: WebhookDispatcher
    workers: dict[str, Worker]
    """The ``workers`` role's jobs, by name."""
    supervisor: Supervisor
    channels: Channels
    """Every channel's parts (its simulator among them on the embedded default, served by the
    ``simulator`` role)."""
    admin_key: str | None
    """Created on first start of an empty database; shown once."""
    shedder: LoadShedder
    """Load shedding: measured by the ``api`` role, asked by every send."""
    url: str = ""
    """The REST API's root, once the ``api`` role runs (or the probes' root, once the
    ``probes`` role runs)."""
    grpc_target: str = ""
    """``host:port`` of the gRPC API, once the ``api`` role runs."""
    relay: Relay | None = None
    """The ``relay`` role's job, with ``CHAT4ALL_NATS_URL`` (else ``None``)."""
    message_log: MessageLog | None = None
    """The partitioned log, with ``CHAT4ALL_NATS_URL``."""
    readiness: Readiness = field(default_factory=Readiness)
    """``/ready``'s checks: ``database`` and ``tasks`` (the supervisor's: a worker down, since
    when), required; ``nats`` (with ``CHAT4ALL_NATS_URL``) and ``redis`` (with
    ``CHAT4ALL_REDIS_URL``), optional until a role that needs them requires them (the
    ``workers`` and ``relay`` roles require ``nats``; nothing requires ``redis``, whose users
    have a fallback)."""

    async def ready(self) -> Report:
        """Every readiness check's answer (:attr:`readiness`)."""
        return await self.readiness()

    async def refresh_gauges(self) -> None:
        """Before each scrape: this process's paused accounts and, when it exports them (it
        runs the workers), the database-wide gauges."""
        self.metrics.paused(self.channels.paused())
        if not self.metrics.database_wide:
            return
        self.metrics.outbox_depth.set(await self.store.depth())
        self.metrics.dead_letters.set(await self.store.dead_count())
        self.metrics.webhook_dead_letters.set(await self.webhooks.dead_count())
        if self.message_log is not None:
            try:
                self.metrics.log_lag.set(await self.message_log.lag())
            except Exception as exc:  # the gauge keeps its last value
                log.warning("could not read the log's lag: %s: %s", type(exc).__name__, exc)

    async def reload(self, settings: Settings) -> dict[tuple[str, str], str]:
        """Apply ``settings`` (re-read from the environment and the settings file) where that
        takes no restart: each channel account's replaced token is swapped in, a paused account
        resumes with it and its waiting messages go at once (audited); what changed. See
        :func:`reload_settings` for reading them."""
        changed = self.channels.reload(settings)
        for (channel, account), what in changed.items():
            released = await self.channel_accounts.released(channel, account)
            await self.audit.append(
                "account_token_reloaded",
                self.accounts.owner(channel, account),
                None,
                f"{channel} account {account!r}: {what} (settings reloaded); "
                f"{released} waiting message(s) released",
            )
        return changed

    @property
    def channel_accounts(self) -> ChannelAccounts:
        assert self.services.channel_accounts is not None
        return self.services.channel_accounts


async def reload_settings(hub: Hub, load: Callable[[], Settings]) -> bool:
    """``chat4all serve``'s answer to SIGHUP: the settings read again (``load``) and applied
    (:meth:`Hub.reload`); whether they were. Invalid settings are logged (which key, why) and
    change nothing: the running ones stay."""
    try:
        settings = load()
    except (InvalidRequest, OSError) as exc:  # OSError: the settings file cannot be read
        log.error(
            "settings not reloaded: %s; the running settings stay: fix the file and reload again",
            exc,
        )
        return False
    changed = await hub.reload(settings)
    log.info(
        "settings reloaded: %s",
        "; ".join(f"{c} account {a!r}: {what}" for (c, a), what in changed.items())
        or "no channel token changed",
    )
    return True


async def open_store(settings: Settings) -> SqlStore:
    """The database of ``settings``, migrated; :class:`StoreUnavailable` says why it is not."""
    url = sa.make_url(settings.database_url)
    try:
        if url.get_backend_name() == "sqlite":
            settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        return await SqlStore.open(
            settings.database_url,
            sqlite_busy_ms=settings.SQLITE_BUSY_MS,
            read_url=settings.DATABASE_READ_URL,
            postgres=PostgresLimits(
                pool_size=settings.DATABASE_POOL_SIZE,
                max_overflow=settings.DATABASE_MAX_OVERFLOW,
                pool_timeout=settings.DATABASE_POOL_TIMEOUT,
                connect_timeout=settings.DATABASE_CONNECT_TIMEOUT,
                statement_timeout=settings.DATABASE_STATEMENT_TIMEOUT,
            ),
        )
    except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:  # ImportError: no driver
        raise StoreUnavailable(
            f"cannot open or migrate the database {settings.database_shown}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; check "
            "CHAT4ALL_DATABASE_URL, that the server is up and that this user may write there"
        ) from None


async def open_media_store(
    settings: Settings, store: SqlStore, stack: contextlib.AsyncExitStack
) -> MediaStore:
    """The media store ``CHAT4ALL_MEDIA_BACKEND`` names (closed with ``stack``); an S3 bucket
    is checked first: :class:`StoreUnavailable` says what is wrong with it,
    :class:`InvalidRequest` that the ``s3`` extra is missing."""
    if settings.MEDIA_BACKEND == "file":
        return FileMediaStore(store, settings.media_dir)
    try:
        from chat4all.adapters.storage.media_s3 import S3MediaStore  # noqa: PLC0415 - s3 extra
    except ImportError:
        raise InvalidRequest(
            "CHAT4ALL_MEDIA_BACKEND=s3 needs the s3 extra (boto3), not installed here: "
            "pip install 'tgstream-chat4all[chat4all,s3]', or set CHAT4ALL_MEDIA_BACKEND=file",
            field="CHAT4ALL_MEDIA_BACKEND",
        ) from None
    bucket = S3MediaStore.from_settings(store, settings)
    stack.callback(bucket.close)
    await bucket.check()
    log.info("media are stored in the %s", bucket.where)
    return bucket


def upload_staging(settings: Settings, store: SqlStore, media: MediaStore) -> UploadStaging:
    """Where resumable uploads are received: in the bucket (and the database) when the media
    are (``CHAT4ALL_MEDIA_BACKEND=s3``), so no API process needs a disk; else under
    ``MEDIA_DIR/.uploads``."""
    ttl = settings.UPLOAD_TTL_HOURS * 3600.0
    if settings.MEDIA_BACKEND == "s3":
        from chat4all.adapters.storage.media_s3 import S3MediaStore  # noqa: PLC0415 - s3 extra
        from chat4all.adapters.storage.uploads_s3 import S3Uploads  # noqa: PLC0415 - s3 extra

        if isinstance(media, S3MediaStore):
            return S3Uploads(store, media, ttl)
    return FileUploads(settings.media_dir / ".uploads", ttl=ttl)


@dataclass(frozen=True, slots=True)
class PartitionedLog:
    """The parts of ``CHAT4ALL_NATS_URL``'s partitioned log in one process."""

    log: JetStreamLog
    relay: Relay
    queue: LogQueue
    """The dispatcher's outbox: claims through the log."""
    owner: PartitionOwner
    relay_wakeup: Wakeup
    workers_wakeup: Wakeup


async def open_log(
    settings: Settings,
    store: SqlStore,
    stack: contextlib.AsyncExitStack,
    worker: str,
    clock: Callable[[], float],
    metrics: HubMetrics,
) -> PartitionedLog | None:
    """The partitioned log of ``settings`` (``None`` without ``CHAT4ALL_NATS_URL``): the NATS
    connection (closed with ``stack``), the stream and its consumers made ready, the wake-ups
    subscribed; :class:`StoreUnavailable` says why not."""
    if not settings.NATS_URL:
        return None
    nc = await connect(settings.NATS_URL)
    stack.push_async_callback(nc.close)
    stream = settings.NATS_STREAM
    log_ = JetStreamLog(
        nc,
        stream,
        settings.PARTITIONS,
        replicas=settings.NATS_REPLICAS,
        duplicate_window=settings.NATS_DUPLICATE_WINDOW,
        ack_wait=settings.NATS_ACK_WAIT,
        max_deliver=settings.NATS_MAX_DELIVER,
    )
    await log_.ensure()
    relay_wakeup = NatsWakeup(nc, f"{stream}.wakeup.relay")
    workers_wakeup = NatsWakeup(nc, f"{stream}.wakeup.workers")
    await relay_wakeup.start()
    await workers_wakeup.start()
    owner = PartitionOwner(
        SqlPartitionLeases(store.db, stream),
        settings.PARTITIONS,
        settings.PARTITION_LEASE,
        worker,
        clock,
        metrics,
        on_gained=workers_wakeup.wake,
    )
    relay = Relay(
        store.outbox,
        log_,
        relay_wakeup,
        workers_wakeup.wake,
        horizon=settings.NATS_DUPLICATE_WINDOW,
        events=metrics,
        clock=clock,
    )
    queue = LogQueue(store, log_, owner, relay_wakeup.wake, metrics, clock)
    return PartitionedLog(log_, relay, queue, owner, relay_wakeup, workers_wakeup)


async def shared_state(
    settings: Settings,
    metrics: HubMetrics,
    stack: contextlib.AsyncExitStack,
    readiness: Readiness,
) -> tuple[RateLimiter, IdempotencyCache]:
    """The rate limiter and the idempotency replays' cache: in this process alone on the
    embedded default, shared by every process through Redis with ``CHAT4ALL_REDIS_URL`` (its
    client closed with ``stack``; whether Redis answers is the optional readiness check
    ``redis``). :class:`InvalidRequest` when the ``redis`` package is missing."""
    if not settings.REDIS_URL:
        local = LocalRateLimiter(
            settings.RATE_PER_KEY, settings.RATE_GLOBAL, per_tenant=settings.RATE_PER_TENANT
        )
        return local, NoIdempotencyCache()
    try:
        from chat4all.adapters import redis_state  # noqa: PLC0415 - only with REDIS_URL
    except ImportError:
        raise InvalidRequest(
            "CHAT4ALL_REDIS_URL needs the redis package, not installed here: "
            "pip install 'tgstream-chat4all[chat4all]', or leave CHAT4ALL_REDIS_URL empty",
            field="CHAT4ALL_REDIS_URL",
        ) from None
    prefix = settings.REDIS_PREFIX
    client = redis_state.redis_client(settings.REDIS_URL, settings.REDIS_TIMEOUT, name=prefix)
    stack.push_async_callback(client.aclose)

    async def pong() -> None:
        await client.ping()

    readiness.add("redis", pong, required=False)
    limiter = redis_state.RedisRateLimiter(
        client,
        prefix,
        per_key=settings.RATE_PER_KEY,
        per_tenant=settings.RATE_PER_TENANT,
        global_=settings.RATE_GLOBAL,
        unavailable=metrics.rate_limiter_unavailable.inc,
    )
    cache = redis_state.RedisIdempotencyCache(
        client, prefix, unavailable=metrics.idempotency_cache_unavailable.inc
    )
    log.info(
        "rate limits and idempotent replays are shared through Redis at %s (keys under %r)",
        settings.redis_shown,
        prefix,
    )
    return limiter, cache


def live_events(settings: Settings, stack: contextlib.AsyncExitStack) -> LiveEvents:
    """The live event bus: in this process on the embedded default, across every process
    through Redis pub/sub with ``CHAT4ALL_REDIS_URL`` (channel ``<CHAT4ALL_REDIS_PREFIX>events``,
    closed with ``stack``; it connects at its first use)."""
    if not settings.REDIS_URL:
        return EventBus()
    from chat4all.adapters.redis_events import RedisEventBus  # noqa: PLC0415 - only with Redis

    bus = RedisEventBus(
        settings.REDIS_URL,
        channel=f"{settings.REDIS_PREFIX}events",
        name=f"{settings.REDIS_PREFIX}events",
        connect_timeout=settings.REDIS_TIMEOUT,
    )
    stack.push_async_callback(bus.close)
    return bus


async def housekeep(hub: Hub) -> None:
    """One round of the ``housekeeping`` role: forget idempotency keys, provider update ids and
    stored live events older than ``CHAT4ALL_IDEMPOTENCY_HOURS``, and delete the unfinished
    uploads without a write for ``CHAT4ALL_UPLOAD_TTL_HOURS`` (counted in
    ``chat4all_uploads_expired_total``). A failure is logged and tried again next round."""
    keep = hub.settings.IDEMPOTENCY_HOURS * 3600.0
    try:
        keys, updates = await hub.store.purge(time.time() - keep)
    except Exception as exc:  # a busy database now is no reason to stop trying
        log.warning("housekeeping failed (retrying in an hour): %s: %s", type(exc).__name__, exc)
    else:
        if keys or updates:
            log.info("forgot %d idempotency key(s) and %d update id(s)", keys, updates)
    try:
        expired = await hub.media.expire_uploads()
    # a full or unmounted volume, a bucket or a database not answering now: next round
    except Exception as exc:
        log.warning(
            "could not delete expired uploads (retrying in an hour): %s: %s",
            type(exc).__name__,
            exc,
        )
    else:
        if expired:
            hub.metrics.uploads_expired.inc(expired)
            log.info("deleted %d unfinished upload(s) past CHAT4ALL_UPLOAD_TTL_HOURS", expired)


async def _housekeeping(hub: Hub, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await housekeep(hub)
        await sleep_or_stop(stop, _HOUSEKEEPING_EVERY)


@contextlib.asynccontextmanager
async def build_hub(settings: Settings, **overrides: Unpack[Overrides]) -> AsyncIterator[Hub]:
    """The hub of ``settings`` wired, with nothing running (see the module's documentation);
    the database and the clients are closed on exit."""
    store = await open_store(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        store.fanout = fanout_many  # webhooks are queued in the transaction of their change
        keys = KeyRing(store)
        webhooks = WebhookStore(store)
        clock = overrides.get("clock", time.time)
        media_store = await open_media_store(settings, store, stack)
        media = MediaLibrary(
            media_store,
            settings.MEDIA_MAX_BYTES,
            clock=clock,
            links=MediaLinks(
                settings.MEDIA_LINK_SECRET, settings.MEDIA_PUBLIC_URL, settings.MEDIA_LINK_TTL
            ),
            uploads=upload_staging(settings, store, media_store),
        )
        admin_key = None
        if not await keys.list():
            admin_key, _ = await keys.create(settings.DEFAULT_TENANT, Role.ADMIN, "first admin key")
        tracer = overrides.get("tracer")
        if tracer is None:
            tracer, provider = tracer_for(settings.OTLP_ENDPOINT)
            if provider is not None:
                stack.callback(provider.shutdown)  # flushes what is still batched
                log.info("traces go to %s", settings.OTLP_ENDPOINT)

        channels = build_channels(settings, media_store)
        stack.push_async_callback(channels.close)
        accounts = channels.accounts
        connectors = overrides.get("connectors", channels.connectors)

        metrics = HubMetrics(CollectorRegistry())
        store.observe = metrics.stored
        shedder = LoadShedder(
            store,
            ShedPolicy(
                outbox_age=settings.SHED_OUTBOX_AGE, outbox_depth=settings.SHED_OUTBOX_DEPTH
            ),
            metrics,
            clock,
        )
        bus = live_events(settings, stack)
        publisher = StatusPublisher(bus)
        store.announcer.live = publisher.committed  # stored events, after their commit
        worker = worker_id()
        supervisor = Supervisor(overrides.get("stop") or asyncio.Event(), clock)
        readiness = Readiness()
        readiness.add("database", functools.partial(_database_answers, store))
        readiness.add("tasks", functools.partial(_tasks_run, supervisor))
        log_ = await open_log(settings, store, stack, worker, clock, metrics)
        if log_ is not None:  # the API's wake-ups only: required by the workers and the relay
            readiness.add("nats", log_.log.check, required=False)
        # with the log: accepts wake the relay, the relay wakes the workers
        wakeup: Wakeup = log_.relay_wakeup if log_ is not None else LocalWakeup()
        limiter, replays = await shared_state(settings, metrics, stack, readiness)
        targets = TargetPolicy(settings.WEBHOOK_ALLOW_PRIVATE, overrides.get("resolver", resolve))
        dispatcher = Dispatcher(
            log_.queue if log_ is not None else store,
            connectors,
            DispatchPolicy(max_attempts=settings.MAX_ATTEMPTS, lease=settings.OUTBOX_LEASE),
            events=metrics,
            clock=clock,
            tracer=tracer,
            wakeup=log_.workers_wakeup if log_ is not None else wakeup,
            worker=worker,
        )
        store.outbox.lapsed = dispatcher.lapsed  # counted where a lapsed lease is reset
        webhook_dispatcher = WebhookDispatcher(
            webhooks,
            lease=settings.OUTBOX_LEASE,
            clock=clock,
            transport=overrides.get("webhook_transport"),
            targets=targets,
        )
        audit = AuditLog(store)
        access = Access(keys, audit, limiter=limiter)
        tenants = Tenants(SqlTenantSettings(store), media.links, audit=audit)
        messages = Messages(
            CachedReplays(store, replays, settings.IDEMPOTENCY_HOURS * 3600.0),
            tracer=tracer,
            accounts=accounts,
            media=media_store,
            limits=channels.limits,
            links=media.links,
            tenants=tenants,
            admit=shedder.check,
        )
        inbound = Inbound(
            store,
            accounts,
            channels.receivers,
            clock=clock,
            counted=metrics.receipt,
            connectors=connectors,
            media=media_store,
        )
        stack.push_async_callback(inbound.close)
        subscriptions = Subscriptions(webhooks, targets)
        workers: dict[str, Worker] = {
            "dispatcher": log_.queue.serving(dispatcher.run)
            if log_ is not None
            else dispatcher.run,
            "webhooks": webhook_dispatcher.run,
            "inbound-files": inbound.run,
            **({"partitions": log_.owner.run} if log_ is not None else {}),
            **overrides.get("workers", {}),
        }
        yield Hub(
            settings=settings,
            store=store,
            keys=keys,
            audit=audit,
            accounts=accounts,
            messages=messages,
            inbound=inbound,
            media=media,
            webhooks=webhooks,
            subscriptions=subscriptions,
            bus=bus,
            publisher=publisher,
            limiter=limiter,
            access=access,
            services=Services(
                messages=messages,
                access=access,
                accounts=accounts,
                dead_letters=DeadLetters(store, wakeup.wake),
                subscriptions=subscriptions,
                inbound=inbound,
                events=LiveStreams(bus, store),
                media=media,
                actions=Actions(store, connectors, channels.limits),
                tenants=tenants,
                channel_accounts=ChannelAccounts(
                    accounts, channels, store, audit, wakeup.wake, clock
                ),
                wake=wakeup.wake,
            ),
            wakeup=wakeup,
            metrics=metrics,
            tracer=tracer,
            dispatcher=dispatcher,
            webhook_dispatcher=webhook_dispatcher,
            workers=workers,
            supervisor=supervisor,
            channels=channels,
            admin_key=admin_key,
            shedder=shedder,
            relay=log_.relay if log_ is not None else None,
            message_log=log_.log if log_ is not None else None,
            readiness=readiness,
        )


async def _database_answers(store: SqlStore) -> None:
    await store.ready()


async def _tasks_run(supervisor: Supervisor) -> str | None:
    down = supervisor.down()
    return down.reason if down is not None else None


async def _simulator(hub: Hub, stack: contextlib.AsyncExitStack) -> None:
    await stack.enter_async_context(
        hub.channels.serving_simulators(port=hub.settings.SIMULATOR_PORT)
    )


def _tls(settings: Settings) -> Tls | None:
    """The certificate both APIs (and the probes) serve, when set; a bad one stops the start
    before anything listens."""
    if settings.TLS_CERT_FILE is not None and settings.TLS_KEY_FILE is not None:
        return Tls(settings.TLS_CERT_FILE, settings.TLS_KEY_FILE)
    return None


async def _serve_http(
    hub: Hub, stack: contextlib.AsyncExitStack, app: Any, tls: Tls | None, name: str
) -> str:
    """Serve ``app`` on ``CHAT4ALL_HOST:CHAT4ALL_PORT`` under the supervisor (as ``name``)
    until the roles stop; its root URL once it listens."""
    settings = hub.settings
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
    task = hub.supervisor.start(name, server.serve())
    stack.callback(setattr, server, "should_exit", True)
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"the {name} server ended before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"{'https' if tls else 'http'}://{settings.HOST}:{port}"


async def _api(hub: Hub, stack: contextlib.AsyncExitStack) -> None:
    settings = hub.settings
    tls = _tls(settings)
    app = create_app(
        hub.services,
        ready=hub.ready,
        metrics=hub.metrics,
        refresh_gauges=hub.refresh_gauges,
        tracer=hub.tracer,
    )
    grpc_server, grpc_port = await start_grpc(
        hub.services,
        f"{settings.HOST}:{settings.GRPC_PORT}",
        ready=hub.ready,
        metrics=hub.metrics,
        tracer=hub.tracer,
        credentials=tls.grpc() if tls is not None else None,
    )
    stack.push_async_callback(grpc_server.stop, 5)
    hub.url = await _serve_http(hub, stack, app, tls, "rest")
    hub.grpc_target = f"{settings.HOST}:{grpc_port}"
    if hub.shedder.policy.on:
        hub.supervisor.start("load-shedding", hub.shedder.run(hub.supervisor.stop))
    log.info(
        "chat4all API on %s/v1 (OpenAPI: %s/v1/openapi.json), gRPC on %s",
        hub.url,
        hub.url,
        hub.grpc_target,
    )


async def _probes(hub: Hub, stack: contextlib.AsyncExitStack) -> None:
    app = create_probes_app(ready=hub.ready, metrics=hub.metrics, refresh_gauges=hub.refresh_gauges)
    hub.url = await _serve_http(hub, stack, app, _tls(hub.settings), "probes")
    log.info("chat4all probes on %s/health, /ready and /metrics", hub.url)


async def _workers(hub: Hub, _stack: contextlib.AsyncExitStack) -> None:
    if "nats" in hub.readiness:  # they claim through the log
        hub.readiness.require("nats")
    hub.metrics.export_database_gauges()
    stop = hub.supervisor.stop
    for name, work in hub.workers.items():
        hub.supervisor.start(name, _as_coroutine(work, stop))


async def _pollers(hub: Hub, _stack: contextlib.AsyncExitStack) -> None:
    for poller in hub.channels.pollers(hub.inbound.received):
        # parked in a long poll at stop: nothing to finish, so cancelled
        hub.supervisor.start(
            poller.name, _as_coroutine(poller.run, hub.supervisor.stop), cancel_on_stop=True
        )


async def _relay(hub: Hub, _stack: contextlib.AsyncExitStack) -> None:
    if hub.relay is None:
        return  # no partitioned log: the workers claim from the database
    hub.readiness.require("nats")
    hub.supervisor.start("relay", hub.relay.run(hub.supervisor.stop))


async def _housekeeping_role(hub: Hub, _stack: contextlib.AsyncExitStack) -> None:
    hub.supervisor.start("housekeeping", _housekeeping(hub, hub.supervisor.stop))


async def _as_coroutine(work: Worker, stop: asyncio.Event) -> None:
    await work(stop)


_START: Final[dict[str, Callable[[Hub, contextlib.AsyncExitStack], Awaitable[None]]]] = {
    "simulator": _simulator,
    "api": _api,
    "workers": _workers,
    "pollers": _pollers,
    "relay": _relay,
    "housekeeping": _housekeeping_role,
    "probes": _probes,
}


@contextlib.asynccontextmanager
async def run_roles(hub: Hub, roles: Iterable[str] = ROLES) -> AsyncIterator[Hub]:
    """Run ``roles`` of ``hub`` (names from :data:`ROLES`, and ``probes``) under its supervisor
    until the block ends; then stop them and wait for them. ``hub.supervisor.wait()`` says when
    to end."""
    wanted = list(dict.fromkeys(roles))
    unknown = [r for r in wanted if r not in _START]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; roles are {', '.join(_START)}")
    async with contextlib.AsyncExitStack() as stack:
        if "simulator" in wanted:  # first up, last down: the workers talk to it to the end
            await _simulator(hub, stack)
        stack.push_async_callback(hub.supervisor.shutdown)
        for role in wanted:
            if role != "simulator":
                await _START[role](hub, stack)
        stack.callback(hub.supervisor.stop.set)  # first thing on the way out
        yield hub


@contextlib.asynccontextmanager
async def running_hub(
    settings: Settings,
    stop: asyncio.Event,
    roles: Iterable[str] = ROLES,
    **overrides: Unpack[Injected],
) -> AsyncIterator[Hub]:
    """The hub of ``settings`` running ``roles`` in this process (every role but ``probes``:
    ``chat4all serve``), until the block ends (``stop`` set on the way out, or by a signal
    before)."""
    async with (
        build_hub(settings, stop=stop, **overrides) as hub,
        run_roles(hub, roles) as running,
    ):
        yield running
