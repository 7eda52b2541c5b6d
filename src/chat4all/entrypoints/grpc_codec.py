"""Between the gRPC messages (``chat4all.v1``) and the domain's values, both ways."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from chat4all.adapters.storage.webhooks import Subscription
from chat4all.domain.model import (
    Attachment,
    Button,
    Contact,
    Content,
    Conversation,
    Location,
    Media,
    Menu,
    MenuRow,
    MenuSection,
    Message,
    QuickReply,
    Reaction,
    Template,
)
from chat4all.errors import InvalidRequest
from chat4all.ports import Chunk, Staged
from chat4all.v1 import api_pb2 as pb

__all__ = [
    "once",
    "content_of",
    "content_pb",
    "message_pb",
    "conversation_pb",
    "subscription_pb",
    "media_pb",
    "upload_pb",
    "chunks_of",
]


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def content_of(c: pb.Content) -> Content:
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
        reaction=(
            Reaction(c.reaction.message_id or None, c.reaction.emoji)
            if c.HasField("reaction")
            else None
        ),
        menu=(
            Menu(
                c.menu.button,
                tuple(
                    MenuSection(
                        s.title if s.HasField("title") else None,
                        tuple(
                            MenuRow(
                                r.id,
                                r.title,
                                r.description if r.HasField("description") else None,
                            )
                            for r in s.rows
                        ),
                    )
                    for s in c.menu.sections
                ),
            )
            if c.HasField("menu")
            else None
        ),
        quick_replies=tuple(
            QuickReply(q.title, q.payload if q.HasField("payload") else None)
            for q in c.quick_replies
        ),
        contacts=tuple(
            Contact(
                k.name,
                tuple(k.phones),
                tuple(k.emails),
                k.organization if k.HasField("organization") else None,
                tuple(k.urls),
            )
            for k in c.contacts
        ),
        options={name: _json_object(name, raw) for name, raw in c.options.items()},
    )


def _json_object(name: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            "options values are JSON objects (the channel's options)",
            field=f"content.options.{name}",
        )
    return value


def content_pb(c: Content) -> pb.Content:
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
    if c.reaction is not None:
        out.reaction.CopyFrom(
            pb.Reaction(message_id=c.reaction.message_id or "", emoji=c.reaction.emoji)
        )
    if c.menu is not None:
        out.menu.CopyFrom(
            pb.Menu(
                button=c.menu.button,
                sections=[
                    pb.MenuSection(
                        title=s.title,
                        rows=[
                            pb.MenuRow(id=r.id, title=r.title, description=r.description)
                            for r in s.rows
                        ],
                    )
                    for s in c.menu.sections
                ],
            )
        )
    out.quick_replies.extend(
        pb.QuickReply(title=q.title, payload=q.payload) for q in c.quick_replies
    )
    out.contacts.extend(
        pb.Contact(
            name=k.name,
            phones=k.phones,
            emails=k.emails,
            organization=k.organization,
            urls=k.urls,
        )
        for k in c.contacts
    )
    for name, value in c.options.items():
        out.options[name] = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if c.postback is not None:
        p = c.postback
        out.postback.CopyFrom(pb.Postback(source=p.source, payload=p.payload, title=p.title))
    if c.unsupported is not None:
        out.unsupported = c.unsupported
    return out


def message_pb(m: Message) -> pb.Message:
    return pb.Message(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        direction=m.direction,
        content=content_pb(m.content),
        status=m.status.value,
        created_at=m.created_at,
        provider_message_id=m.provider_message_id,
        history=[
            pb.StatusEvent(status=e.status.value, at=e.at, detail=e.detail) for e in m.history
        ],
    )


def conversation_pb(c: Conversation) -> pb.Conversation:
    return pb.Conversation(
        id=c.id,
        channel=str(c.channel),
        account=c.account,
        recipient=c.recipient,
        last_message_at=c.last_message_at,
    )


def subscription_pb(s: Subscription) -> pb.Subscription:
    return pb.Subscription(id=s.id, url=s.url, events=s.events, created_at=s.created_at)


def media_pb(m: Media) -> pb.Media:
    return pb.Media(
        id=m.id,
        filename=m.filename,
        mime_type=m.mime_type,
        size=m.size,
        sha256=m.sha256,
        kind=m.kind,
    )


def upload_pb(staged: Staged, offset: int) -> pb.Upload:
    return pb.Upload(
        id=staged.id,
        size=staged.size,
        offset=offset,
        filename=staged.filename,
        mime_type=staged.mime_type,
    )


async def chunks_of(
    first: pb.AppendUploadRequest, rest: AsyncIterator[pb.AppendUploadRequest]
) -> AsyncIterator[Chunk]:
    """An AppendUpload stream's chunks: one per message with data (or a sha256), the first
    message's included; a later message naming another upload is refused."""
    if first.data or first.HasField("sha256"):
        yield _chunk(first)
    async for request in rest:
        if request.upload_id not in ("", first.upload_id):
            raise InvalidRequest(
                "upload_id is for the first message only; a stream appends to one upload",
                field="upload_id",
            )
        if request.data or request.HasField("sha256"):
            yield _chunk(request)


def _chunk(request: pb.AppendUploadRequest) -> Chunk:
    return Chunk(request.data, request.sha256 if request.HasField("sha256") else None)
