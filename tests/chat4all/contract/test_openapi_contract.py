"""The REST API keeps its OpenAPI contract: schemathesis generates requests for every operation
from the served document and sends them over HTTP to a real hub (SQLite, dispatcher, the Bot
API simulator). No answer may be a 5xx, and every answer's status, content type, headers and
body must be the documented ones, including the errors (401 without a key, 404, 422 ...)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.contracts import openapi_document
from chat4all.errors import InvalidRequest
from chat4all.service_layer.targets import TargetPolicy
from tests.chat4all.channels.telegram_hub import webhook_secret
from tests.chat4all.conftest import hub_running

DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
SECURED = [
    (path, method.upper())
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
    if operation.get("security")
]


class HubThread:
    """A hub in its own thread and event loop, so that schemathesis' synchronous client can
    talk to it over loopback while it runs."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.hub: Hub | None = None
        self._thread = threading.Thread(target=self._run, name="contract-hub", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # hundreds of requests a minute: no 429 to hide the answers
        async with hub_running(self._data_dir, self._stop, RATE_PER_KEY=0) as hub:
            self.hub = hub
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Hub:
        self._thread.start()
        assert self._ready.wait(30), "the hub did not start"
        if self._error is not None:
            raise self._error
        assert self.hub is not None
        return self.hub

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the hub did not stop"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with HubThread(tmp_path_factory.mktemp("contract")) as running:
        yield running


# /v1/events streams until the client goes away: a generated request with a key never ends
# (schemathesis reads whole answers). Its unauthenticated answer is checked below.
@schema.exclude(path="/v1/events").parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(case: schemathesis.Case, hub: Hub) -> None:
    headers: dict[str, Any] = {"Authorization": f"Bearer {hub.admin_key}"}
    provider_call = case.path.endswith("/webhook")
    if provider_call:  # past the secret, so generated bodies reach the channel's parser
        headers = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(hub)}
        case.path_parameters = {
            **(case.path_parameters or {}),
            "channel": "telegram",
            "account": SIMULATOR_ACCOUNT,
        }
    account = case.body.get("account") if isinstance(case.body, dict) else None
    if isinstance(account, str) and 1 <= len(account) <= 128:
        # A tenant sends only through its own accounts (the schema cannot know which): a valid
        # account becomes the hub's, so generated sends go all the way to acceptance (an
        # invalid one stays, for the negative cases).
        case.body["account"] = SIMULATOR_ACCOUNT
    # Rules the schema does not state: a cursor is opaque (only the API's own are accepted),
    # a channel is one the hub carries (channels other than Telegram have smaller limits than
    # the schema's maxima), a content needs one of text, attachments, location or template, a
    # provider's webhook body is the provider's own format, and an Idempotency-Key that an
    # earlier generated request used with another body conflicts. A 422 for those is right, so
    # "schema-valid data is accepted" is not asked of such requests.
    content = case.body.get("content", {}) if isinstance(case.body, dict) else {}
    attachments = content.get("attachments") if isinstance(content, dict) else None
    business_rules = (
        provider_call
        or bool((case.query or {}).get("cursor"))
        or (
            isinstance(content, dict)
            and not (content.get("text") or attachments)
            and content.get("location") is None
            and content.get("template") is None
        )
        # An attachment is exactly one of a url and an upload's media_id, and a generated
        # media_id names no upload.
        or any(
            not isinstance(a, dict) or a.get("media_id") is not None or a.get("url") is None
            for a in attachments or ()
        )
        or "idempotency-key" in {name.lower() for name in case.headers or {}}
        or (isinstance(case.body, dict) and case.body.get("channel") not in (None, "telegram"))
        # A subscription URL's host must be a valid name or address, without credentials
        # (tests/chat4all/unit/test_targets.py holds those rules).
        or (case.path == "/v1/subscriptions" and not _acceptable_url(case.body))
    )
    case.call_and_validate(
        base_url=hub.url,
        headers=headers,
        excluded_checks=[positive_data_acceptance] if business_rules else None,
    )


def _acceptable_url(body: object) -> bool:
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        return True  # the schema's own business
    try:
        TargetPolicy(allow_private=True).check(url)
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(("path", "method"), SECURED, ids=[f"{m} {p}" for p, m in SECURED])
def test_without_a_key_every_secured_operation_answers_a_documented_401(
    path: str, method: str, hub: Hub
) -> None:
    operation = schema[path][method]
    params = [p.name for p in operation.path_parameters]
    case = operation.Case(path_parameters=dict.fromkeys(params, "x"))
    response = case.call(base_url=hub.url)
    assert response.status_code == 401, response.text
    case.validate_response(response)
