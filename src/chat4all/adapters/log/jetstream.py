"""The partitioned log on NATS JetStream, and the wake-up carried by core NATS.

One stream ``<name>`` takes the subjects ``<name>.outbox.<partition>``; the publisher computes
the partition (:func:`~chat4all.domain.partition.partition_of`) and sets the ``Nats-Msg-Id``
header (nats-py has no ``msg_id`` keyword), so the stream's duplicate window drops a second
publication of one id. Retention is *work queue*: an entry acknowledged is removed, so the
stream holds only what is still to do (the database keeps the history) and its size is the
workers' lag. Each partition has one durable pull consumer ``p<N>`` filtered on its subject,
explicit ack, ``ack_wait`` and ``max_deliver`` from the settings. Whoever starts first creates
the stream and the consumers; every start updates them to the settings (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from chat4all.domain.partition import partition_of
from chat4all.errors import StoreUnavailable
from chat4all.ports import LogEntry
from chat4all.service_layer.wakeup import LocalWakeup

__all__ = ["JetStreamLog", "NatsWakeup", "connect"]

log = logging.getLogger(__name__)

_SECRET: Final = re.compile(r"^([a-z]+://)[^@/]*@")
"""A server URL's credentials (``nats://user:password@host``), masked in errors."""
_START_TRIES: Final = 3
"""Connection attempts per server at start, a second apart."""
_MIN_FETCH_WAIT: Final = 0.01
"""nats-py refuses a fetch without a timeout; below this a no-wait probe answers anyway."""


class JetStreamLog:
    """:class:`~chat4all.ports.MessageLog` on the JetStream stream ``stream``."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        partitions: int,
        *,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
    ) -> None:
        self.partitions = partitions
        self.max_deliver = max_deliver
        self.stream = stream
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._replicas = replicas
        self._window = duplicate_window
        self._ack_wait = ack_wait
        self._subs: dict[int, JetStreamContext.PullSubscription] = {}
        self._recreating = asyncio.Lock()

    def subject(self, partition: int) -> str:
        return f"{self.stream}.outbox.{partition}"

    async def ensure(self) -> None:
        """Create the stream and one consumer per partition, or bring them to the settings;
        :class:`~chat4all.errors.StoreUnavailable` says why not."""
        try:
            await self._ensure()
        except nats.errors.Error as exc:
            raise StoreUnavailable(
                f"cannot set up the JetStream stream {self.stream!r}: {type(exc).__name__}: "
                f"{exc}; check that the NATS server runs with JetStream (nats-server -js) and "
                "allows CHAT4ALL_NATS_REPLICAS copies, and that CHAT4ALL_NATS_STREAM is not "
                "another stream's (its subjects, its retention)"
            ) from None

    async def _ensure(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.stream}.outbox.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=self._replicas,
            duplicate_window=self._window,
        )
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await self._js.add_stream(config)
                log.info("created the JetStream stream %s", self.stream)
            except nats.js.errors.BadRequestError:  # another process was first
                await self._js.update_stream(config)
        else:
            await self._js.update_stream(config)
        await asyncio.gather(*(self._consumer(p) for p in range(self.partitions)))

    async def _consumer(self, partition: int) -> None:
        await self._js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=f"p{partition}",
                filter_subject=self.subject(partition),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._ack_wait,
                max_deliver=self.max_deliver,
            ),
        )

    async def publish(self, key: str, msg_id: str, payload: bytes) -> bool:
        subject = self.subject(partition_of(key, self.partitions))
        headers = {"Nats-Msg-Id": msg_id}
        try:
            ack = await self._js.publish(subject, payload, stream=self.stream, headers=headers)
        except nats.js.errors.NoStreamResponseError:  # the stream is gone (deleted, reset)
            await self._recreate()
            ack = await self._js.publish(subject, payload, stream=self.stream, headers=headers)
        return not ack.duplicate

    async def _recreate(self) -> None:
        """The stream is gone: create it and its consumers again (once for concurrent
        publishers). What it held is published again by the relay past its horizon."""
        async with self._recreating:
            try:
                await self._js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                pass
            else:
                return  # another publisher was first
            log.warning(
                "the JetStream stream %s is gone: creating it again (what it held is "
                "published again after CHAT4ALL_NATS_DUPLICATE_WINDOW)",
                self.stream,
            )
            await self.ensure()

    async def fetch(self, partition: int, limit: int, wait: float = 0.0) -> list[LogEntry]:
        sub = self._subs.get(partition)
        if sub is None:
            sub = await self._js.pull_subscribe_bind(durable=f"p{partition}", stream=self.stream)
            self._subs[partition] = sub
        try:
            msgs = await sub.fetch(limit, timeout=max(wait, _MIN_FETCH_WAIT))
        except (nats.errors.TimeoutError, TimeoutError):  # nothing due: nats-py raises either
            return []
        return [
            LogEntry(
                partition,
                (m.headers or {}).get("Nats-Msg-Id", ""),
                m.data,
                m.metadata.num_delivered or 1,
                m,
            )
            for m in msgs
        ]

    async def ack(self, entry: LogEntry) -> None:
        await _msg(entry).ack()

    async def nak(self, entry: LogEntry, delay: float) -> None:
        await _msg(entry).nak(delay=delay)

    async def term(self, entry: LogEntry) -> None:
        await _msg(entry).term()

    async def progress(self, entry: LogEntry) -> None:
        await _msg(entry).in_progress()

    async def lag(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.messages)

    async def check(self) -> str | None:
        """Why the log cannot be used now (``None``: it can): the connection is down (it
        reconnects), or JetStream does not answer for the stream (raises)."""
        if not self._nc.is_connected:
            return "not connected to NATS (reconnecting)"
        await self._js.stream_info(self.stream)
        return None

    async def close(self) -> None:
        for sub in self._subs.values():
            await sub.unsubscribe()
        self._subs.clear()


def _msg(entry: LogEntry) -> Msg:
    assert isinstance(entry.handle, Msg)
    return entry.handle


class NatsWakeup:
    """:class:`~chat4all.service_layer.wakeup.Wakeup` across processes: a wake-up is published
    on the core NATS subject ``subject`` (no persistence: a lost one costs a poll interval) and
    ends the waits of every process subscribed to it, this one's too."""

    def __init__(self, nc: Client, subject: str) -> None:
        self._nc = nc
        self._subject = subject
        self._local = LocalWakeup()
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async def heard(_msg: Msg) -> None:
            self._local.wake()

        await self._nc.subscribe(self._subject, cb=heard)

    def wake(self) -> None:
        self._local.wake()
        task = asyncio.ensure_future(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        try:
            await self._nc.publish(self._subject)
        except Exception as exc:  # a lost wake-up costs one poll interval
            log.debug("wake-up on %s not sent: %s", self._subject, exc)

    async def wait(self, timeout: float) -> None:
        await self._local.wait(timeout)


async def connect(url: str) -> Client:
    """A connection to the NATS server(s) ``url`` (comma-separated), reconnecting for ever
    once up; :class:`~chat4all.errors.StoreUnavailable` says why there is none."""
    servers = [u.strip() for u in url.split(",") if u.strip()]

    async def error(exc: Exception) -> None:  # one line, no traceback: it reconnects
        log.warning("NATS: %s: %s", type(exc).__name__, exc)

    opened: list[Client] = []

    async def disconnected() -> None:
        if not (opened and opened[0].is_closed):  # not our own close
            log.warning("NATS: disconnected; reconnecting")

    async def reconnected() -> None:
        log.info("NATS: reconnected")

    try:
        nc = await nats.connect(
            servers,
            name="chat4all",
            connect_timeout=5,
            reconnect_time_wait=1,
            no_echo=True,  # our own wake-ups are rung locally already (NatsWakeup.wake)
            # at start: give up after a few tries (exit 3, says why); once up: never
            max_reconnect_attempts=_START_TRIES,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
    except Exception as exc:
        shown = ", ".join(_SECRET.sub(r"\1***@", s) for s in servers)
        raise StoreUnavailable(
            f"cannot connect to NATS at {shown}: {type(exc).__name__}: {exc}; check "
            "CHAT4ALL_NATS_URL and that the server runs (with JetStream: nats-server -js)"
        ) from None
    opened.append(nc)
    nc.options["max_reconnect_attempts"] = -1
    return nc
