"""Use cases on messages. REST and gRPC call these and nothing else, so they cannot drift."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

from opentelemetry.trace import Tracer
from pydantic import ValidationError

from chat4all.domain.model import (
    ATTACHMENT_KINDS,
    Attachment,
    Content,
    ContentKind,
    Conversation,
    Media,
    Message,
    Oversize,
    content_document,
)
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import Limits
from chat4all.ports import Accepted, MediaStore, MessageStore, Page, SendRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.media import size_text
from chat4all.service_layer.media_links import MediaLinks
from chat4all.service_layer.tenants import Tenants
from chat4all.telemetry import NO_TRACER, current_origin

__all__ = ["Messages", "validate", "options", "MAX_PAGE"]

MAX_PAGE: Final = 200


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: str | None, field: str, most: int, least: int = 0) -> None:
    """A bounded field; identifiers (``least`` >= 1) also without control characters."""
    if value is None:
        return
    if not least <= len(value) <= most:
        raise InvalidRequest(f"{field} must be {least}-{most} characters", field=field)
    if "\x00" in value or (least and _CONTROL.search(value)):
        raise InvalidRequest(f"{field} contains control characters", field=field)


def validate(request: SendRequest, limits: Limits | None = None) -> None:
    """Every bound and the channel's ``limits``, checked before a message is accepted (never
    after), the same for REST and gRPC (``None``: the bounds only)."""
    content, channel = request.content, request.channel
    _text(request.account, "account", 128, 1)
    _text(request.recipient, "recipient", 128, 1)
    for n, button in enumerate(content.buttons):
        _text(button.title, f"content.buttons[{n}].title", 64, 1)
        _text(button.payload, f"content.buttons[{n}].payload", 64)
        _text(button.url, f"content.buttons[{n}].url", 2048)
    _bounds(content)
    if content.template is not None:
        _text(content.template.name, "content.template.name", 512, 1)
        _text(content.template.language, "content.template.language", 15, 2)
    location = content.location
    if location is not None and not (
        -90 <= location.latitude <= 90 and -180 <= location.longitude <= 180
    ):  # NaN fails both
        raise InvalidRequest(
            "latitude must be -90..90 and longitude -180..180", field="content.location"
        )
    if content.empty:
        raise InvalidRequest(
            "a message needs text, an attachment, a location, contacts, a reaction or a template",
            field="content",
        )
    if content.postback is not None or content.unsupported is not None:
        raise InvalidRequest(
            "postback and unsupported are what providers send us, not what we send",
            field="content.postback" if content.postback is not None else "content.unsupported",
        )
    if limits is not None:
        _fits(content, channel, limits)
    for n, attachment in enumerate(content.attachments):
        _check_reference(attachment, f"content.attachments[{n}]")
        _text(attachment.url, f"content.attachments[{n}].url", 2048)
        _text(attachment.filename, f"content.attachments[{n}].filename", 255)
        _text(attachment.mime_type, f"content.attachments[{n}].mime_type", 127)
    if not request.recipient.strip():
        raise InvalidRequest("recipient is empty", field="recipient")


_KIND_FIELD: Final = {
    ContentKind.TEXT: "content.text",
    ContentKind.ATTACHMENTS: "content.attachments",
    ContentKind.LOCATION: "content.location",
    ContentKind.CONTACTS: "content.contacts",
    ContentKind.REPLY: "content.reply_to",
    ContentKind.REACTION: "content.reaction",
    ContentKind.TEMPLATE: "content.template",
    ContentKind.BUTTONS: "content.buttons",
    ContentKind.MENU: "content.menu",
    ContentKind.QUICK_REPLIES: "content.quick_replies",
}


def _bounds(content: Content) -> None:
    """The bounds of the kinds added with the Meta channels, the same for every channel (a
    channel's own, smaller ones are in its limits)."""
    if content.reaction is not None:
        _text(content.reaction.message_id, "content.reaction.message_id", 32, 1)
        if content.reaction.message_id is None:
            raise InvalidRequest(
                "a reaction names the message it is on (our id)",
                field="content.reaction.message_id",
            )
        _text(content.reaction.emoji, "content.reaction.emoji", 16)
    if content.reply_to is not None:
        _text(content.reply_to, "content.reply_to", 32, 1)
    if content.menu is not None:
        _text(content.menu.button, "content.menu.button", 64, 1)
        if not content.menu.sections or not all(s.rows for s in content.menu.sections):
            raise InvalidRequest(
                "a menu has sections, each with at least one row", field="content.menu.sections"
            )
        ids: set[str] = set()
        for i, section in enumerate(content.menu.sections):
            _text(section.title, f"content.menu.sections[{i}].title", 64, 1)
            for j, row in enumerate(section.rows):
                where = f"content.menu.sections[{i}].rows[{j}]"
                _text(row.id, f"{where}.id", 200, 1)
                _text(row.title, f"{where}.title", 64, 1)
                _text(row.description, f"{where}.description", 256)
                if row.id in ids:
                    raise InvalidRequest(f"row id {row.id!r} is used twice", field=f"{where}.id")
                ids.add(row.id)
    for n, quick in enumerate(content.quick_replies):
        _text(quick.title, f"content.quick_replies[{n}].title", 64, 1)
        _text(quick.payload, f"content.quick_replies[{n}].payload", 1000)
    for n, contact in enumerate(content.contacts):
        where = f"content.contacts[{n}]"
        _text(contact.name, f"{where}.name", 256, 1)
        _text(contact.organization, f"{where}.organization", 256)
        for k, phone in enumerate(contact.phones):
            _text(phone, f"{where}.phones[{k}]", 64, 1)
        for k, email in enumerate(contact.emails):
            _text(email, f"{where}.emails[{k}]", 256, 1)
        for k, url in enumerate(contact.urls):
            _text(url, f"{where}.urls[{k}]", 2048, 1)
        if not (contact.phones or contact.emails or contact.urls):
            raise InvalidRequest("a contact needs a phone, an email or a url", field=where)


def _fits(content: Content, channel: str, limits: Limits) -> None:
    """What ``channel`` can carry (its plugin's limits)."""
    for kind in content.kinds():
        if not limits.supports(kind):
            raise InvalidRequest(
                f"{channel} does not send {kind.value.replace('_', ' ')}; it sends "
                f"{', '.join(limits.sends())}",
                field=_KIND_FIELD[kind],
            )
    if content.text is not None and len(content.text) > limits.text:
        raise InvalidRequest(
            f"text is {len(content.text)} characters; {channel} allows {limits.text}",
            field="content.text",
        )
    if content.text is not None and limits.text_bytes is not None:
        size = len(content.text.encode())
        if size > limits.text_bytes:
            raise InvalidRequest(
                f"text is {size} bytes of UTF-8; {channel} allows {limits.text_bytes} bytes",
                field="content.text",
            )
    _fits_choices(content, channel, limits)
    if len(content.attachments) > limits.attachments:
        raise InvalidRequest(
            f"{len(content.attachments)} attachments; {channel} allows "
            f"{limits.attachments} per message",
            field="content.attachments",
        )
    for n, attachment in enumerate(content.attachments):
        if attachment.caption and len(attachment.caption) > limits.caption:
            raise InvalidRequest(
                f"caption is {len(attachment.caption)} characters; {channel} "
                f"allows {limits.caption}",
                field=f"content.attachments[{n}].caption",
            )
        if attachment.kind is not None and attachment.kind not in limits.kinds:
            raise InvalidRequest(
                f"{channel} does not send {attachment.kind} attachments; it sends "
                f"{', '.join(sorted(limits.kinds))}",
                field=f"content.attachments[{n}].kind",
            )
    if len(content.buttons) > limits.buttons:
        raise InvalidRequest(
            f"{len(content.buttons)} buttons; {channel} allows {limits.buttons}",
            field="content.buttons",
        )
    if content.location is not None and not limits.location:
        raise InvalidRequest(f"{channel} does not send locations", field="content.location")
    if content.template is not None and not limits.templates:
        raise InvalidRequest(
            f"{channel} has no message templates: send text instead", field="content.template"
        )


def _fits_choices(content: Content, channel: str, limits: Limits) -> None:
    """Menus, quick replies, contacts and titles within ``channel``'s limits."""
    for n, button in enumerate(content.buttons):
        _title(button.title, f"content.buttons[{n}].title", channel, limits.titles)
    for n, quick in enumerate(content.quick_replies):
        _title(quick.title, f"content.quick_replies[{n}].title", channel, limits.titles)
    if len(content.quick_replies) > limits.quick_replies:
        raise InvalidRequest(
            f"{len(content.quick_replies)} quick replies; {channel} allows {limits.quick_replies}",
            field="content.quick_replies",
        )
    if len(content.contacts) > limits.contacts:
        raise InvalidRequest(
            f"{len(content.contacts)} contacts; {channel} allows {limits.contacts}",
            field="content.contacts",
        )
    menu = content.menu
    if menu is None:
        return
    _title(menu.button, "content.menu.button", channel, limits.titles)
    if len(menu.sections) > limits.menu_sections:
        raise InvalidRequest(
            f"{len(menu.sections)} menu sections; {channel} allows {limits.menu_sections}",
            field="content.menu.sections",
        )
    if menu.rows > limits.menu_rows:
        raise InvalidRequest(
            f"{menu.rows} menu rows; {channel} allows {limits.menu_rows} in all sections",
            field="content.menu.sections",
        )
    for i, section in enumerate(menu.sections):
        if section.title is not None:
            _title(section.title, f"content.menu.sections[{i}].title", channel, limits.titles)
        for j, row in enumerate(section.rows):
            where = f"content.menu.sections[{i}].rows[{j}]"
            _title(row.title, f"{where}.title", channel, limits.titles)
            if row.description is not None and len(row.description) > limits.descriptions:
                raise InvalidRequest(
                    f"description is {len(row.description)} characters; {channel} allows "
                    f"{limits.descriptions}",
                    field=f"{where}.description",
                )


def _title(value: str, where: str, channel: str, most: int) -> None:
    if len(value) > most:
        raise InvalidRequest(
            f"title is {len(value)} characters; {channel} allows {most}", field=where
        )


def options(request: SendRequest, limits: Limits | None) -> SendRequest:
    """``content.options`` validated by the channel's model (``Limits.options``) and stored as
    it dumps them; options for another channel than the request's, or for a channel that takes
    none, are refused (422 naming the field)."""
    given = request.content.options
    if not given:
        return request
    channel = request.channel
    for name in given:
        if name != channel:
            raise InvalidRequest(
                f"options for {name!r} on a message to {channel}: give "
                f"content.options.{channel} (or none)",
                field=f"content.options.{name}",
            )
    if limits is None:
        return request
    if limits.options is None:
        raise InvalidRequest(f"{channel} takes no options", field=f"content.options.{channel}")
    try:
        model = limits.options.model_validate(given[channel])
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidRequest(
            f"{error['msg']}", field=f"content.options.{channel}" + (f".{where}" if where else "")
        ) from None
    dumped = model.model_dump(mode="json", exclude_unset=True)
    return replace(request, content=replace(request.content, options={channel: dumped}))


def _check_reference(attachment: Attachment, where: str) -> None:
    if attachment.url is not None and attachment.media_id is not None:
        raise InvalidRequest(
            "an attachment has either url (a link) or media_id (an upload), not both", field=where
        )
    if attachment.media_id is not None:
        if not attachment.media_id.strip():
            raise InvalidRequest("media_id is empty", field=f"{where}.media_id")
    elif attachment.url is None:
        raise InvalidRequest(
            "an attachment needs url (an http(s) link) or media_id (from POST /v1/media)",
            field=where,
        )
    elif not attachment.url.startswith(("http://", "https://")):
        raise InvalidRequest("an attachment is a reference: an http(s) URL", field=f"{where}.url")
    if attachment.kind is not None and attachment.kind not in ATTACHMENT_KINDS:
        raise InvalidRequest(
            f"kind must be one of {', '.join(ATTACHMENT_KINDS)}", field=f"{where}.kind"
        )


def body_hash(request: SendRequest) -> str:
    """What an Idempotency-Key is bound to: the whole request, canonically serialised."""
    content = content_document(request.content)
    for attachment in content["attachments"]:
        # As before uploads existed, so a key taken then still matches its retry: a link
        # without a kind is a document, and no media_id is no field.
        if attachment["media_id"] is None:
            del attachment["media_id"]
            attachment["kind"] = attachment["kind"] or "document"
    doc = {
        "channel": request.channel,
        "account": request.account,
        "recipient": request.recipient,
        "content": content,
    }
    if request.oversize is not None:  # absent unless given, so earlier keys still match
        doc["oversize"] = request.oversize.value
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Messages:
    def __init__(
        self,
        store: MessageStore,
        clock: Callable[[], float] = time.time,
        tracer: Tracer = NO_TRACER,
        accounts: Accounts | None = None,
        media: MediaStore | None = None,
        limits: Mapping[str, Limits] | None = None,
        links: MediaLinks | None = None,
        tenants: Tenants | None = None,
        admit: Callable[[], None] | None = None,
    ) -> None:
        """``admit`` is asked first by every send and raises to refuse it (load shedding:
        :meth:`~chat4all.service_layer.shedding.LoadShedder.check`; ``None``: every send is
        admitted). ``accounts``: who owns which channel account; a send through another tenant's
        account is refused (``None``: no check, for tests of the store alone). ``limits``:
        each channel's (from its plugin); ``None``: only the bounds every channel shares.
        ``links``: signs the links an upload over a channel's limit is sent as (``None``: no
        links); ``tenants``: each tenant's policy for such uploads (``None``: refuse them)."""
        self._links = links if links is not None else MediaLinks(None)
        self._tenants = tenants
        self._accounts = accounts
        self._limits = limits
        self._store = store
        self._clock = clock
        self._tracer = tracer
        self._media = media
        self._admit = admit

    async def send(
        self, tenant: str, request: SendRequest, idempotency_key: str | None = None
    ) -> Accepted:
        """Validate and persist; the message is durable when this returns (HTTP 202)."""
        if self._admit is not None:
            self._admit()
        with self._tracer.start_as_current_span(
            "accept message",
            attributes={"chat4all.channel": request.channel, "chat4all.tenant": tenant},
        ) as span:
            limits = self._limits_of(request.channel)
            validate(request, limits)
            resolved = await self._resolve(tenant, options(request, limits), limits)
            await self._reacted_on(tenant, request)
            if self._accounts is not None:
                self._accounts.check(tenant, request.channel, request.account)
            if idempotency_key is not None:
                _text(idempotency_key, "Idempotency-Key", 255, 1)
            key = (idempotency_key, body_hash(request)) if idempotency_key else None
            accepted = await self._store.accept(
                tenant, resolved, key, self._clock(), current_origin()
            )
            span.set_attribute("chat4all.message_id", accepted.message.id)
            span.set_attribute("chat4all.replayed", accepted.replayed)
            return accepted

    def capabilities(self, channel: str) -> dict[str, list[str]]:
        """What ``channel`` sends and does (``GET /v1/channels``, ``ListChannels``): its
        content kinds, attachment kinds and actions (empty lists when unknown here)."""
        limits = (self._limits or {}).get(channel)
        if limits is None:
            return {"sends": [], "attachment_kinds": [], "actions": []}
        return {
            "sends": list(limits.sends()),
            "attachment_kinds": sorted(limits.kinds),
            "actions": sorted(limits.actions),
        }

    def _limits_of(self, channel: str) -> Limits | None:
        if self._limits is None:
            return None
        limits = self._limits.get(channel)
        if limits is None:
            raise InvalidRequest(
                f"unknown channel {channel!r}; this hub carries {', '.join(sorted(self._limits))}",
                field="channel",
            )
        return limits

    async def _resolve(
        self, tenant: str, request: SendRequest, limits: Limits | None
    ) -> SendRequest:
        """Every attachment with its kind; an upload checked to be the tenant's own (another
        tenant's media id is refused exactly like one that does not exist) and to fit the
        channel, and its file name and type filled in from it. An upload over the channel's
        limit for its kind is refused, or (policy ``link``: the request's ``oversize``, else the
        tenant's) taken out of the attachments and sent in the text as its caption and a
        signed, expiring link to the file."""
        if not request.content.attachments:
            return request  # nothing to resolve (and two dataclass copies saved per message)
        attachments = []
        links: list[str] = []
        for n, attachment in enumerate(request.content.attachments):
            if attachment.media_id is None:
                attachments.append(replace(attachment, kind=attachment.kind or "document"))
                continue
            where = f"content.attachments[{n}].media_id"
            if self._media is None:
                raise InvalidRequest("this hub stores no uploads: send a url", field=where)
            try:
                media = await self._media.get(tenant, attachment.media_id)
            except NotFound:
                raise InvalidRequest(
                    f"no media {attachment.media_id!r} here: upload the file first (POST "
                    "/v1/media or UploadMedia) and send the id it returns",
                    field=where,
                ) from None
            kind = attachment.kind or media.kind
            if limits is not None:
                _fits_kind(request.channel, limits, kind, n)
                most = limits.max_bytes.get(kind)
                if most is not None and media.size > most:
                    policy = request.oversize or await self._oversize(tenant)
                    if policy is Oversize.REJECT:
                        linkable = self._links.refusal is None
                        raise _too_big(request.channel, limits, kind, media.size, n, linkable)
                    links.append(_link_text(attachment, self._link(tenant, media)))
                    continue
            attachments.append(
                replace(
                    attachment,
                    kind=kind,
                    filename=attachment.filename or media.filename,
                    mime_type=attachment.mime_type or media.mime_type,
                )
            )
        content = replace(request.content, attachments=tuple(attachments))
        if links:
            text = "\n\n".join(t for t in (content.text, *links) if t)
            content = replace(content, text=text)
            if limits is not None:
                try:
                    _fits(content, request.channel, limits)  # the text with its links
                except InvalidRequest as exc:
                    raise InvalidRequest(
                        f"{exc} with the link to the file: shorten the text or the caption",
                        field=exc.field,
                    ) from None
        return replace(request, content=content)

    async def _oversize(self, tenant: str) -> Oversize:
        if self._tenants is None:
            return Oversize.REJECT
        return await self._tenants.oversize(tenant)

    def _link(self, tenant: str, media: Media) -> str:
        """A signed link to ``media``; 422 (field ``oversize``) saying which setting is missing
        when this hub cannot make links."""
        return self._links.url(tenant, media.id, self._clock())

    async def _reacted_on(self, tenant: str, request: SendRequest) -> None:
        """A reaction is on a message of the tenant's (its provider id is looked up when the
        reaction is sent)."""
        reaction = request.content.reaction
        if reaction is None or reaction.message_id is None:
            return
        try:
            await self._store.get(tenant, reaction.message_id)
        except NotFound:
            raise InvalidRequest(
                f"no message {reaction.message_id!r} to react to: give the id of a message of "
                "the conversation",
                field="content.reaction.message_id",
            ) from None

    async def get(self, tenant: str, message_id: str) -> Message:
        return await self._store.get(tenant, message_id)

    async def conversations(
        self, tenant: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Conversation]:
        return await self._store.conversations(tenant, cursor, _page(limit))

    async def history(
        self, tenant: str, conversation_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Message]:
        return await self._store.messages(tenant, conversation_id, cursor, _page(limit))


def _fits_kind(channel: str, limits: Limits, kind: str, n: int) -> None:
    if kind not in limits.kinds:
        raise InvalidRequest(
            f"{channel} does not send {kind} attachments; it sends "
            f"{', '.join(sorted(limits.kinds))}",
            field=f"content.attachments[{n}].kind",
        )


def _too_big(
    channel: str, limits: Limits, kind: str, size: int, n: int, linkable: bool
) -> InvalidRequest:
    """The refusal of an upload over ``channel``'s limit for ``kind`` (policy ``reject``), with
    what the client can do instead (a link only when this hub can make one)."""
    most = limits.max_bytes[kind]
    noun = "photos" if kind == "image" else f"{kind}s"
    ways = ["send a smaller file"]
    as_document = limits.max_bytes.get("document")
    if kind != "document" and "document" in limits.kinds and (as_document or size) >= size:
        ways.append('send it with kind "document"')
    if linkable:
        ways.append('send it as a link (oversize "link")')
    if len(ways) > 1:
        ways[-2:] = [f"{ways[-2]} or {ways[-1]}"]
    return InvalidRequest(
        f"the {kind} is {size_text(size)}; {channel} takes {noun} up to "
        f"{size_text(most)}: {', '.join(ways)}",
        field=f"content.attachments[{n}].kind",
    )


def _link_text(attachment: Attachment, url: str) -> str:
    """What an oversize attachment becomes in the text: its caption, then its link."""
    return f"{attachment.caption}\n{url}" if attachment.caption else url


def _page(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1-{MAX_PAGE}", field="limit")
    return limit


def text(value: str) -> Content:
    """Shorthand for a text-only content (tests, examples)."""
    return Content(text=value)
