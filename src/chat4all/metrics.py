"""chat4all's Prometheus metrics, in an injected registry.

Label values come from bounded sets: route templates (never raw paths), methods, status
classes, channels, outcomes, and the configured channel accounts.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["HubMetrics"]


class HubMetrics:
    """The dispatcher's :class:`~chat4all.service_layer.dispatcher.DispatchEvents`, and the API's
    request metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "chat4all_http_requests",
            "REST requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "chat4all_http_request_seconds",
            "REST request latency by route template.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.rpcs = Counter(
            "chat4all_grpc_requests",
            "gRPC calls by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.rpc_latency = Histogram(
            "chat4all_grpc_request_seconds",
            "gRPC call latency by method.",
            ["method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.dispatch_total = Counter(
            "chat4all_dispatch",
            "Delivery attempts by channel and outcome (sent, retry, paused, failed, dead).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.dispatch_latency = Histogram(
            "chat4all_dispatch_seconds",
            "Provider call duration by channel.",
            ["channel"],
            registry=registry,
        )
        self.maybe_duplicated = Counter(
            "chat4all_possible_duplicates",
            "Messages in flight at a crash and sent again (the provider may have seen them twice).",
            registry=registry,
        )
        self.breaker_open = Gauge(
            "chat4all_breaker_open",
            "Channel accounts whose circuit breaker is open.",
            registry=registry,
        )
        # database-wide: in the registry only once export_database_gauges() says so
        self.outbox_depth = Gauge(
            "chat4all_outbox_depth", "Messages waiting for delivery (not dead).", registry=None
        )
        self.dead_letters = Gauge(
            "chat4all_dead_letters", "Messages in the dead-letter store.", registry=None
        )
        self.webhook_dead_letters = Gauge(
            "chat4all_webhook_dead_letters",
            "Webhook deliveries given up on after 24 hours.",
            registry=None,
        )
        self.database_wide = False
        """Whether this process exports the database-wide gauges (it runs the workers)."""
        self.load_shed = Counter(
            "chat4all_load_shed",
            "Sends refused (503, gRPC UNAVAILABLE) because the workers are behind, by reason: "
            "outbox_age (the oldest due message waited too long), outbox_depth (too many wait).",
            ["reason"],
            registry=registry,
        )
        for reason in ("outbox_age", "outbox_depth"):
            self.load_shed.labels(reason)  # shown at 0 from the start
        self.load_shedding = Gauge(
            "chat4all_load_shedding",
            "1 while this API process refuses sends because the workers are behind, else 0.",
            registry=registry,
        )
        self.unrecorded_outcomes = Gauge(
            "chat4all_unrecorded_outcomes",
            "Delivery outcomes the database refused, retried every round (their conversations "
            "wait meanwhile).",
            registry=registry,
        )
        self.receipts = Counter(
            "chat4all_receipts",
            "Provider status reports by channel and outcome: applied, recorded (a failed after "
            "delivered, kept in the history), stale (a repeat or out of order: nothing "
            "changed), unknown (no message of ours).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.uploads_expired = Counter(
            "chat4all_uploads_expired",
            "Unfinished resumable uploads deleted after CHAT4ALL_UPLOAD_TTL_HOURS without a write.",
            registry=registry,
        )
        self.account_paused = Gauge(
            "chat4all_channel_account_paused",
            "1 while a channel account is paused (its provider refused its credentials, e.g. an "
            "expired token): its messages wait until its token is replaced or an admin resumes "
            "it; else 0.",
            ["channel", "account"],
            registry=registry,
        )
        self.relay_published = Counter(
            "chat4all_relay_published",
            "Outbox rows the relay published to the partitioned log for their present attempt.",
            registry=registry,
        )
        self.relay_republished = Counter(
            "chat4all_relay_republished",
            "Outbox rows published again after the relay's horizon, still unclaimed (the log "
            "lost them, or was reset).",
            registry=registry,
        )
        self.partitions_owned = Gauge(
            "chat4all_log_partitions_owned",
            "Partitions of the log this process's worker consumes (sum() over processes: all).",
            registry=registry,
        )
        self.log_dead_letters = Counter(
            "chat4all_log_dead_lettered",
            "Messages dead-lettered after the log handed them out NATS_MAX_DELIVER times "
            "without an outcome (workers crashed on them).",
            registry=registry,
        )
        self.log_followed_messages = Counter(
            "chat4all_log_followed",
            "Messages a worker claimed with the delivery of their conversation's previous one, "
            "in its transaction, without the partitioned log (a busy conversation stays with "
            "its worker); with chat4all_relay_published_total: every message claimed once.",
            registry=registry,
        )
        self.log_lag = Gauge(
            "chat4all_log_lag",
            "Entries of the partitioned log not yet acknowledged by a worker (the same for "
            "every process: do not sum).",
            registry=registry,
        )
        self.rate_limiter_unavailable = Counter(
            "chat4all_rate_limiter_unavailable",
            "Requests whose rate limits this process decided alone because Redis did not answer "
            "(CHAT4ALL_REDIS_URL): meanwhile each process grants the full limits.",
            registry=registry,
        )
        self.idempotency_cache_unavailable = Counter(
            "chat4all_idempotency_cache_unavailable",
            "Idempotency-Key lookups the database answered because Redis did not.",
            registry=registry,
        )
        self.store_latency = Histogram(
            "chat4all_store_seconds",
            "Store calls as their callers wait for them, by operation: accept (a message "
            "accepted: its idempotency key reserved and its group commit), claim (the "
            "dispatcher's claim of due messages), record (a delivery recorded, in a group "
            "commit).",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self._open: set[str] = set()

    def export_database_gauges(self) -> None:
        """Export the gauges that describe the whole database (outbox depth, dead letters,
        webhook dead letters): done by the process that runs the workers, so that an API-only
        process never reports them and a ``sum()`` over processes does not count them once per
        API replica. Idempotent."""
        if not self.database_wide:
            for gauge in (self.outbox_depth, self.dead_letters, self.webhook_dead_letters):
                self.registry.register(gauge)
            self.database_wide = True

    # ---- the store ----

    def stored(self, operation: str, seconds: float) -> None:
        """A store call of ``operation`` took ``seconds`` (:attr:`SqlStore.observe
        <chat4all.adapters.storage.sql.SqlStore.observe>`)."""
        self.store_latency.labels(operation).observe(seconds)

    # ---- ShedEvents ----

    def shedding(self, on: bool) -> None:
        self.load_shedding.set(1 if on else 0)

    def shed(self, reason: str) -> None:
        self.load_shed.labels(reason).inc()

    # ---- DispatchEvents ----

    def dispatched(self, channel: str, outcome: str, seconds: float) -> None:
        self.dispatch_total.labels(channel, outcome).inc()
        self.dispatch_latency.labels(channel).observe(seconds)

    def recovered(self, count: int) -> None:
        self.maybe_duplicated.inc(count)

    def unrecorded(self, count: int) -> None:
        self.unrecorded_outcomes.set(count)

    # ---- LogEvents ----

    def published(self, fresh: int, again: int) -> None:
        self.relay_published.inc(fresh)
        self.relay_republished.inc(again)

    def partitions_owned_now(self, count: int) -> None:
        self.partitions_owned.set(count)

    def log_dead_lettered(self, count: int) -> None:
        self.log_dead_letters.inc(count)

    def log_followed(self, count: int) -> None:
        self.log_followed_messages.inc(count)

    def receipt(self, channel: str, outcome: str) -> None:
        self.receipts.labels(channel, outcome).inc()

    def breaker(self, account: str, open_: bool) -> None:
        (self._open.add if open_ else self._open.discard)(account)
        self.breaker_open.set(len(self._open))

    def paused(self, accounts: Mapping[tuple[str, str], str | None]) -> None:
        """Each ``(channel, account)``: paused (why) or not (``None``)."""
        for (channel, account), why in accounts.items():
            self.account_paused.labels(channel, account).set(0 if why is None else 1)
