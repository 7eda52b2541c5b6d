"""Every table of the hub's database, on one :data:`metadata`.

The one place a table is declared: the stores import their tables from here, and the migrations'
autogenerate check compares the scripts against this metadata. A change here needs a new
migration (``python -m chat4all.adapters.storage.migrate "what changed"``).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "metadata",
    "conversations",
    "messages",
    "status_events",
    "live_events",
    "outbox",
    "inbound_updates",
    "idempotency",
    "subscriptions",
    "webhook_outbox",
    "api_keys",
    "audit_log",
    "media",
    "staged_uploads",
    "staged_segments",
    "tenant_settings",
    "partition_leases",
    "partition_workers",
]

metadata = sa.MetaData()
"""Every table. One whose ``info`` says ``runtime`` holds the coordination of the processes
running now (partition leases), not the hub's data: a copy to another database skips it."""

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("recipient", sa.String(128), nullable=False),
    sa.Column("next_seq", sa.Integer, nullable=False, default=1),
    sa.Column("last_message_at", sa.Float),
    sa.UniqueConstraint("tenant", "channel", "account", "recipient"),
)
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("provider_message_id", sa.String(128)),
    # when an outbound message reached the provider (its ``sent``): watermark receipts cover
    # every message of the conversation sent up to a time
    sa.Column("sent_at", sa.Float),
    sa.UniqueConstraint("conversation_id", "seq"),
    sa.Index("messages_provider_id", "provider_message_id"),  # receipts find messages by it
    sa.Index("messages_sent", "conversation_id", "sent_at"),
)
status_events = sa.Table(
    "status_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "message_id", sa.String(32), sa.ForeignKey("messages.id"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)
live_events = sa.Table(
    "live_events",
    metadata,
    # the event's id on every process (SSE ``id:``, gRPC resume token): ordered, durable;
    # 64 bits on PostgreSQL (billions of events), SQLite's rowid there
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("live_events_replay", "tenant", "id"),  # a tenant's events after a given id
    sa.Index("live_events_at", "at"),  # retention
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
    sa.Column("conversation_id", sa.String(32), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # pending, inflight or dead; a sent message's row is deleted
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    # Where the send was accepted: the W3C trace context (``traceparent``) and the request id,
    # so the dispatcher's span and logs continue the request's.
    sa.Column("trace_context", sa.String(128)),
    sa.Column("request_id", sa.String(64)),
    # provider ids (JSON list) of the parts an attempt delivered before failing: not sent again
    sa.Column("parts_done", sa.Text),
    # an in-flight row's holder (``host:pid:random``) and when its lease runs out: until then no
    # other worker takes it; after that any worker may (its holder is presumed dead)
    sa.Column("leased_by", sa.String(128)),
    sa.Column("lease_until", sa.Float),
    # With a partitioned log (CHAT4ALL_NATS_URL): when the relay last published the row and
    # the generation it published (the ``Nats-Msg-Id`` is ``<message_id>:<attempts>:<gen>``).
    # ``NULL``: not published for its present attempt; back to pending bumps the generation.
    sa.Column("published_at", sa.Float),
    sa.Column("published_gen", sa.Integer, nullable=False, default=0, server_default="0"),
    # The conversation's turn: its one row that is in flight, or else may be claimed next (its
    # lowest pending seq). Kept by the writes that change it (accept, delivery, dead letter,
    # replay), so a claim walks the conversations' heads, never their backlogs.
    sa.Column("head", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Index("outbox_due", "state", "conversation_id", "seq"),
    # the claim's walk: the due heads, oldest first (each engine's condition as its queries
    # spell it, so that they imply it: SQLite compares a boolean with 1)
    sa.Index(
        "outbox_heads",
        "available_at",
        postgresql_where=sa.text("state = 'pending' AND head"),
        sqlite_where=sa.text("state = 'pending' AND head = 1"),
    ),
    # a conversation's head, if it has one (when its turn passes)
    sa.Index(
        "outbox_turns",
        "conversation_id",
        postgresql_where=sa.text("head"),
        sqlite_where=sa.text("head = 1"),
    ),
    # the relay's walk: the heads still to publish (a head already published is skipped)
    sa.Index(
        "outbox_unpublished",
        "available_at",
        postgresql_where=sa.text("state = 'pending' AND head AND published_at IS NULL"),
        sqlite_where=sa.text("state = 'pending' AND head = 1 AND published_at IS NULL"),
    ),
)
inbound_updates = sa.Table(
    "inbound_updates",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("account", sa.String(128), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(32)),
    sa.Column("received_at", sa.Float),
    # when the message was told to the tenant's clients; NULL: not yet (its files are being
    # downloaded, or the process died before: the sweep of Inbound.announce_pending)
    sa.Column("announced_at", sa.Float),
    sa.Index("inbound_updates_age", "received_at"),
)
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(32)),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # the first answer (the accepted message as it was then, JSON): a replay returns it as is
    sa.Column("response", sa.Text),
    sa.Index("idempotency_age", "created_at"),
)
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("events", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(32), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    # pending, inflight or dead; a delivered row is deleted
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("leased_by", sa.String(128)),  # as in ``outbox``
    sa.Column("lease_until", sa.Float),
    sa.Index("webhook_due", "state", "available_at"),
)
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("role", sa.String(8), nullable=False),
    sa.Column("hash", sa.String(255), nullable=False),
    sa.Column("name", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("tenant", sa.String(64)),
    sa.Column("actor", sa.String(32)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
media = sa.Table(
    "media",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("mime_type", sa.String(127), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
staged_uploads = sa.Table(
    "staged_uploads",
    metadata,
    # a resumable upload staged in an S3 bucket (MEDIA_BACKEND=s3; the file backend keeps this
    # on its disk): what was declared, ...
    sa.Column("id", sa.String(35), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("mime_type", sa.String(127), nullable=False),
    sa.Column("kind", sa.String(16)),
    sa.Column("sha256", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    # ... the bytes kept (the offset to resume from) and when the last chunk was kept ...
    sa.Column("kept", sa.BigInteger, nullable=False),
    sa.Column("written_at", sa.Float, nullable=False),
    # ... and the request writing it now (a random token) until ``held_until``; NULL: none
    sa.Column("holder", sa.String(32)),
    sa.Column("held_until", sa.Float),
    sa.Index("staged_uploads_written", "written_at"),
)
staged_segments = sa.Table(
    "staged_segments",
    metadata,
    # the kept bytes of a staged upload, in objects of the bucket: [start, start + size) is in
    # ``<S3_PREFIX>.uploads/<upload id>/<name>``
    sa.Column("upload_id", sa.String(35), primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
)
tenant_settings = sa.Table(
    "tenant_settings",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    # what an upload over a channel's limit becomes: ``reject`` (a 422) or ``link``
    sa.Column("oversize", sa.String(8), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
partition_leases = sa.Table(
    "partition_leases",
    metadata,
    # which log (the stream's name) and which of its partitions
    sa.Column("log", sa.String(64), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    # the worker that consumes it (``host:pid:random``) until ``lease_until``; NULL: free
    sa.Column("holder", sa.String(128)),
    sa.Column("lease_until", sa.Float, nullable=False),
    info={"runtime": True},
)
partition_workers = sa.Table(
    "partition_workers",
    metadata,
    # the workers sharing a log's partitions, alive while ``alive_until`` is ahead: the fair
    # share is the partitions divided among them
    sa.Column("log", sa.String(64), primary_key=True),
    sa.Column("worker", sa.String(128), primary_key=True),
    sa.Column("alive_until", sa.Float, nullable=False),
    info={"runtime": True},
)
