"""The REST API's request and response bodies (pydantic): what the OpenAPI document shows.

Requests refuse unknown fields (``extra="forbid"``) and convert to domain values with
``to_domain``; responses are built from domain values by :mod:`.documents`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from chat4all.domain.model import (
    Attachment,
    Button,
    Contact,
    Content,
    DeliveryStatus,
    Location,
    Menu,
    MenuRow,
    MenuSection,
    Postback,
    QuickReply,
    Reaction,
    StatusEvent,
    Template,
)

__all__ = [
    "AttachmentKind",
    "SendKind",
    "EventType",
    "OversizePolicy",
    "SettingsIn",
    "SettingsOut",
    "AttachmentIn",
    "LocationIn",
    "ButtonIn",
    "TemplateIn",
    "ReactionIn",
    "MenuRowIn",
    "MenuSectionIn",
    "MenuIn",
    "QuickReplyIn",
    "ContactIn",
    "ContentIn",
    "SendIn",
    "ActionName",
    "ActionIn",
    "SubscriptionIn",
    "ContentOut",
    "MessageOut",
    "MessagePage",
    "ConversationOut",
    "ConversationPage",
    "DeadLetterOut",
    "DeadLetterPage",
    "SubscriptionOut",
    "SubscriptionList",
    "NewSubscription",
    "MediaOut",
    "ChannelOut",
    "ChannelList",
    "ChannelAccountOut",
    "ChannelAccountList",
    "ResumeIn",
    "ResumedOut",
    "Health",
    "Readiness",
    "ErrorDetail",
    "ErrorBody",
    "ChannelName",
]

ChannelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern="^[a-z][a-z0-9_-]*$",
        description="A channel's name, as GET /v1/channels lists them",
    ),
]


class AttachmentKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"


class SendKind(StrEnum):
    """An attachment's kind in a send: an upload's kinds, and ``sticker`` (an image upload or
    link sent as a sticker, on a channel that sends them)."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"


class OversizePolicy(StrEnum):
    """What an upload over the channel's limit for its kind becomes: ``reject``, a 422 saying
    the size and the limit; ``link``, text with its caption and a signed, expiring link to the
    file (needs CHAT4ALL_MEDIA_PUBLIC_URL and CHAT4ALL_MEDIA_LINK_SECRET)."""

    REJECT = "reject"
    LINK = "link"


class EventType(StrEnum):
    MESSAGE_STATUS = "message.status"
    MESSAGE_INBOUND = "message.inbound"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentIn(_Strict):
    url: str | None = Field(
        default=None, max_length=2048, pattern="^https?://", description="An http(s) link"
    )
    media_id: str | None = Field(
        default=None, max_length=32, description="An upload's id (POST /v1/media)"
    )
    kind: SendKind | None = Field(
        default=None, description="Default: document for a url, the upload's kind for a media_id"
    )
    filename: str | None = Field(default=None, max_length=255)
    mime_type: str | None = Field(default=None, max_length=127)
    caption: str | None = Field(default=None, max_length=1024)


class LocationIn(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None


class ButtonIn(_Strict):
    title: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)


class TemplateIn(_Strict):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    parameters: list[str] = []


class ReactionIn(_Strict):
    message_id: str = Field(
        min_length=1, max_length=32, description="Our id of the message reacted to"
    )
    emoji: str = Field(default="", max_length=16, description='The emoji; "" removes ours')


class MenuRowIn(_Strict):
    id: str = Field(min_length=1, max_length=200, description="Comes back when chosen")
    title: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=256)


class MenuSectionIn(_Strict):
    title: str | None = Field(default=None, max_length=64)
    rows: list[MenuRowIn] = Field(min_length=1, max_length=100)


class MenuIn(_Strict):
    """An interactive list: a button that opens sections of rows to choose from."""

    button: str = Field(min_length=1, max_length=64, description="The button's label")
    sections: list[MenuSectionIn] = Field(min_length=1, max_length=100)


class QuickReplyIn(_Strict):
    title: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(default=None, max_length=1000, description="Default: title")


class ContactIn(_Strict):
    name: str = Field(min_length=1, max_length=256)
    phones: list[str] = Field(default=[], max_length=20)
    emails: list[str] = Field(default=[], max_length=20)
    organization: str | None = Field(default=None, max_length=256)
    urls: list[str] = Field(default=[], max_length=20)


class ContentIn(_Strict):
    """What is sent; per-channel limits (smaller than the maxima here) are checked on accept:
    a kind the channel does not send (GET /v1/channels lists each channel's), or more of it
    than the channel takes, is a 422 naming the field and the channel's limit."""

    # "Needs one of" is checked on accept (422 on ``content``), not stated in the schema: an
    # anyOf of required fields reads to client generators as four anonymous content types.
    model_config = ConfigDict(
        json_schema_extra={
            "description": "Needs text, an attachment, a location, contacts, a reaction or a "
            "template."
        }
    )

    text: str | None = Field(default=None, max_length=4096)
    attachments: list[AttachmentIn] = Field(default=[], max_length=10)
    location: LocationIn | None = None
    reply_to: str | None = None
    template: TemplateIn | None = None
    buttons: list[ButtonIn] = Field(default=[], max_length=100)
    extensions: dict[str, str] = {}
    reaction: ReactionIn | None = None
    menu: MenuIn | None = None
    # ``| None``: a list of objects with required fields reads to the OpenAPI breaking-change
    # check as a new required request property; ``null`` is the same as none.
    quick_replies: list[QuickReplyIn] | None = Field(default=None, max_length=100)
    contacts: list[ContactIn] | None = Field(default=None, max_length=100)
    options: dict[str, dict[str, Any]] = Field(
        default={},
        description="Typed channel-specific options under the channel's name, e.g. "
        '{"<channel>": {"preview_url": true}}: each channel\'s model is in this document '
        "(<Channel>Options) and is checked on accept",
    )

    def to_domain(self) -> Content:
        return Content(
            text=self.text,
            attachments=tuple(Attachment(**a.model_dump(mode="json")) for a in self.attachments),
            location=Location(**self.location.model_dump()) if self.location else None,
            reply_to=self.reply_to,
            template=(
                Template(
                    self.template.name, self.template.language, tuple(self.template.parameters)
                )
                if self.template
                else None
            ),
            buttons=tuple(Button(**b.model_dump()) for b in self.buttons),
            extensions=tuple(sorted(self.extensions.items())),
            reaction=(
                Reaction(self.reaction.message_id, self.reaction.emoji) if self.reaction else None
            ),
            menu=(
                Menu(
                    self.menu.button,
                    tuple(
                        MenuSection(
                            s.title, tuple(MenuRow(r.id, r.title, r.description) for r in s.rows)
                        )
                        for s in self.menu.sections
                    ),
                )
                if self.menu
                else None
            ),
            quick_replies=tuple(QuickReply(q.title, q.payload) for q in self.quick_replies or ()),
            contacts=tuple(
                Contact(c.name, tuple(c.phones), tuple(c.emails), c.organization, tuple(c.urls))
                for c in self.contacts or ()
            ),
            options=self.options,
        )


class SendIn(_Strict):
    channel: ChannelName
    account: str = Field(min_length=1, max_length=128, description="Our account on the channel")
    recipient: str = Field(
        min_length=1, max_length=128, pattern=r"\S", description="The chat/user on the channel"
    )
    content: ContentIn
    oversize: OversizePolicy | None = Field(
        default=None,
        description="For an upload over the channel's limit for its kind: reject (422) or link "
        "(sent as its caption and a signed, expiring link); default: the tenant's setting "
        "(GET /v1/settings)",
    )


class SettingsIn(_Strict):
    oversize: OversizePolicy | None = Field(
        default=None,
        description="The tenant's default for uploads over a channel's limit (absent: unchanged)",
    )


class SettingsOut(BaseModel):
    oversize: OversizePolicy = Field(
        description="What an upload over a channel's limit for its kind becomes unless the send "
        "says otherwise (default: reject)"
    )


class ActionName(StrEnum):
    TYPING_ON = "typing_on"
    TYPING_OFF = "typing_off"
    MARK_READ = "mark_read"


class ActionIn(_Strict):
    action: ActionName = Field(description="What to do in the conversation now")


class SubscriptionIn(_Strict):
    url: str = Field(min_length=8, max_length=2048, pattern="^https?://")
    events: list[EventType] = Field(min_length=1)


class ContentOut(BaseModel):
    text: str | None
    attachments: list[Attachment]
    location: Location | None
    reply_to: str | None
    template: Template | None
    buttons: list[Button]
    extensions: dict[str, str]
    reaction: Reaction | None = None
    menu: Menu | None = None
    quick_replies: list[QuickReply] = []
    contacts: list[Contact] = []
    options: dict[str, dict[str, Any]] = {}
    postback: Postback | None = Field(
        default=None, description="Inbound: the button pressed, the row chosen, the quick reply"
    )
    unsupported: str | None = Field(
        default=None, description="Inbound: the provider's type of a message we do not model"
    )


class MessageOut(BaseModel):
    """A message as :func:`chat4all.domain.model.message_document` writes it."""

    id: str
    tenant: str
    conversation_id: str
    seq: int
    direction: Literal["outbound", "inbound"]
    content: ContentOut
    status: DeliveryStatus
    created_at: float
    provider_message_id: str | None
    history: list[StatusEvent]


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class ConversationOut(BaseModel):
    id: str
    tenant: str
    channel: str = Field(description="The channel's name")
    account: str
    recipient: str
    last_message_at: float | None


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    message: MessageOut
    error: str


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


class SubscriptionOut(BaseModel):
    id: str
    tenant: str
    url: str
    events: list[str]
    created_at: float


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class NewSubscription(SubscriptionOut):
    secret: str = Field(description="The signing secret, shown in this answer only")


class MediaOut(BaseModel):
    """An upload as clients see it (no tenant, no storage details)."""

    id: str
    filename: str
    mime_type: str
    size: int
    sha256: str
    kind: AttachmentKind


class ChannelOut(BaseModel):
    name: str = Field(description="What a send's `channel` names")
    accounts: list[str] = Field(description="This tenant's accounts on the channel")
    sends: list[str] = Field(
        default=[], description="The content kinds it sends (others are refused with a 422)"
    )
    attachment_kinds: list[str] = Field(default=[], description="The attachment kinds it sends")
    actions: list[str] = Field(
        default=[], description="The conversation actions it does (typing_on, mark_read ...)"
    )


class ChannelList(BaseModel):
    items: list[ChannelOut]


class ChannelAccountOut(BaseModel):
    name: str = Field(description="The account (what a send's `account` names)")
    paused: bool = Field(
        description="Whether its provider refused its credentials (an expired or revoked "
        "token): its messages wait, neither sent nor failed, until it is resumed"
    )
    reason: str | None = Field(
        default=None, description="Why it is paused (the provider's error code and message)"
    )


class ChannelAccountList(BaseModel):
    items: list[ChannelAccountOut]


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="A new access token for the account, used from now on (never returned or "
        "logged). It lasts until the hub restarts: put it in the settings too. Absent: the "
        "account resumes with the token it has",
    )


class ResumedOut(ChannelAccountOut):
    released: int = Field(description="Waiting messages that go out now")


class Health(BaseModel):
    status: Literal["ok"]


class ReadinessCheck(BaseModel):
    ok: bool
    required: bool = Field(
        description="Whether the process is not ready without it (else only degraded)"
    )
    detail: str | None = Field(default=None, description="Why not, when not ok")


class Readiness(BaseModel):
    ready: bool
    reason: str | None = Field(
        default=None, description="Each failing required check, `name: why`, when not ready"
    )
    degraded: list[str] = Field(
        default_factory=list,
        description="The optional checks that fail: the process works on without them",
    )
    checks: dict[str, ReadinessCheck] = Field(
        default_factory=dict,
        description="Every check by name: database, tasks, nats, redis (those configured)",
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(description="Where in the request the problem is, when known")


class ErrorBody(BaseModel):
    error: ErrorDetail
