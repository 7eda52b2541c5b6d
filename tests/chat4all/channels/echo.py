"""A channel that exists only in the tests: "echo", a small provider shaped like the business
messaging platforms (a bearer token per account for sends; a GET verification handshake and
HMAC-SHA256-signed POST deliveries with messages and receipts). It is registered through the
registry's injection point, never an entry point, and proves that a new channel changes no
contract and no core module."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr

from chat4all.domain.model import Attachment, Content, Conversation, DeliveryStatus, Message
from chat4all.errors import AuthError, InvalidRequest, PermanentDelivery, RetryableDelivery
from chat4all.plugin import (
    SIMULATOR_ACCOUNT,
    AccountSettings,
    ChannelPlugin,
    ChannelSettings,
    Deliver,
    Fault,
    InboundMessage,
    Limits,
    Poller,
    Receipt,
    Received,
)
from chat4all.ports import MediaStore, WebhookReply, WebhookRequest

__all__ = ["CHANNEL", "EchoChannel", "EchoSimulator"]

SIGNATURE: Final = "x-echo-signature-256"
_SIM_TOKEN: Final = "echo-simulated-token"
_SIM_SECRET: Final = "echo-simulated-app-secret"
_SIM_VERIFY: Final = "echo-simulated-verify-token"


class EchoAccount(AccountSettings):
    token: SecretStr
    app_secret: SecretStr
    verify_token: SecretStr


class EchoSettings(ChannelSettings):
    ACCOUNTS: dict[str, EchoAccount] = Field(default_factory=dict)
    API_URL: str = "https://echo.invalid"

    def accounts(self) -> Mapping[str, EchoAccount]:
        return self.ACCOUNTS


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class EchoConnector:
    channel = "echo"

    def __init__(self, settings: EchoSettings) -> None:
        self._tokens = {n: a.token.get_secret_value() for n, a in settings.accounts().items()}
        self._client = httpx.AsyncClient(base_url=settings.API_URL, timeout=10)

    async def close(self) -> None:
        await self._client.aclose()

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        token = self._tokens.get(conversation.account)
        if token is None:
            raise PermanentDelivery(f"no echo account {conversation.account!r}")
        content = message.content
        body = {
            "to": conversation.recipient,
            "text": content.text,
            "attachments": [{"kind": a.kind, "url": a.url} for a in content.attachments],
            "location": None
            if content.location is None
            else [content.location.latitude, content.location.longitude],
            "buttons": [b.title for b in content.buttons],
        }
        try:
            answer = await self._client.post(
                f"/{conversation.account}/messages",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise RetryableDelivery(f"echo: {type(exc).__name__}") from None
        if answer.status_code == 200:
            return str(answer.json()["id"])
        where = f"echo: HTTP {answer.status_code}"
        if answer.status_code == 429:
            raise RetryableDelivery(where, float(answer.headers.get("retry-after", "1")))
        if answer.status_code >= 500:
            raise RetryableDelivery(where)
        raise PermanentDelivery(where)


class EchoReceiver:
    def __init__(self, settings: EchoSettings) -> None:
        self._accounts = settings.accounts()

    async def webhook(self, account: str, request: WebhookRequest) -> Received:
        config = self._accounts[account]
        if request.method == "GET":  # the verification handshake
            if request.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
                request.query.get("hub.verify_token", "").encode(),
                config.verify_token.get_secret_value().encode(),
            ):
                raise AuthError("wrong or missing hub.verify_token")
            challenge = request.query.get("hub.challenge", "").encode()
            return Received(reply=WebhookReply(200, challenge, "text/plain"))
        expected = _signature(config.app_secret.get_secret_value(), request.body)
        if not hmac.compare_digest(request.headers.get(SIGNATURE, "").encode(), expected.encode()):
            raise AuthError(f"wrong or missing {SIGNATURE}")
        try:
            doc = json.loads(request.body)
            messages = tuple(
                InboundMessage(
                    m["id"],
                    m["from"],
                    m["id"],
                    Content(
                        text=m.get("text"),
                        attachments=tuple(
                            Attachment(a["url"], a["kind"]) for a in m.get("attachments", ())
                        ),
                    ),
                )
                for m in doc.get("messages", ())
            )
            receipts = tuple(
                Receipt(s["id"], DeliveryStatus(s["status"])) for s in doc.get("statuses", ())
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidRequest(f"not an echo delivery: {type(exc).__name__}") from None
        return Received(messages, receipts)


@dataclass
class EchoSimulator:
    """The echo provider: records what it was sent, answers faults, makes signed deliveries."""

    accounts: dict[str, EchoAccount]
    sent: list[dict[str, Any]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> FastAPI:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/{account}/messages")
        async def send(account: str, request: Request) -> JSONResponse:
            config = self.accounts.get(account)
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if config is None or token != config.token.get_secret_value():
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if self.faults:
                status = self.faults.pop(0)
                return JSONResponse({"error": "fault"}, status_code=status)
            body = await request.json()
            if not (body.get("text") or body.get("attachments") or body.get("location")):
                return JSONResponse({"error": "empty message"}, status_code=400)
            message_id = f"echo-{next(self._ids)}"
            self.sent.append({"account": account, "id": message_id, **body})
            return JSONResponse({"id": message_id})

        return app

    def inject(self, fault: Fault, times: int = 1) -> None:
        status = {Fault.THROTTLED: 429, Fault.UNAVAILABLE: 503, Fault.REFUSED: 403}[fault]
        self.faults += [status] * times

    def sent_to(self, recipient: str) -> int:
        return sum(1 for s in self.sent if s["to"] == recipient)

    def texts(self, recipient: str) -> list[str]:
        return [s["text"] for s in self.sent if s["to"] == recipient]

    def user_message(self, sender: str, text: str) -> bytes:
        n = next(self._ids)
        return json.dumps({"messages": [{"id": f"in-{n}", "from": sender, "text": text}]}).encode()

    def receipt(self, message_id: str, status: str) -> bytes:
        return json.dumps({"statuses": [{"id": message_id, "status": status}]}).encode()

    def webhook_request(
        self, account: str, payload: bytes, *, genuine: bool = True
    ) -> WebhookRequest:
        secret = self.accounts[account].app_secret.get_secret_value() if genuine else "forged"
        headers = {"content-type": "application/json", SIGNATURE: _signature(secret, payload)}
        return WebhookRequest("POST", {}, headers, payload)


class EchoChannel:
    name = "echo"
    limits = Limits(
        text=500,
        caption=200,
        attachments=1,
        buttons=3,
        kinds=frozenset({"image", "document"}),
        max_bytes={"image": 1024 * 1024},
    )
    settings = EchoSettings

    def simulated(self, settings: EchoSettings, api_url: str) -> EchoSettings:
        account = EchoAccount(
            token=SecretStr(_SIM_TOKEN),
            app_secret=SecretStr(_SIM_SECRET),
            verify_token=SecretStr(_SIM_VERIFY),
        )
        return settings.model_copy(
            update={"ACCOUNTS": {SIMULATOR_ACCOUNT: account}, "API_URL": api_url}
        )

    def simulator(self, settings: EchoSettings) -> EchoSimulator:
        return EchoSimulator(dict(settings.accounts()))

    def connector(self, settings: EchoSettings, media: MediaStore | None) -> EchoConnector:
        return EchoConnector(settings)

    def receiver(self, settings: EchoSettings) -> EchoReceiver:
        return EchoReceiver(settings)

    def pollers(self, settings: EchoSettings, deliver: Deliver) -> Sequence[Poller]:
        return ()


CHANNEL: Final[ChannelPlugin[EchoSettings]] = EchoChannel()
