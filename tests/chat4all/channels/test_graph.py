"""The shared Meta Graph pieces: version, signature, handshake, error classification, client."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat4all.adapters.channels.graph import (
    GRAPH_RULES,
    AccountPaused,
    Action,
    GraphClient,
    GraphError,
    GraphFailure,
    check_signature,
    check_version,
    classify,
    handshake,
    sign,
    verify,
)
from chat4all.errors import AuthError, InvalidRequest, PermanentDelivery, RetryableDelivery
from chat4all.ports import WebhookRequest
from chat4all.simulator.host import serving

SECRET = "app-secret-123"


def test_version_pattern() -> None:
    assert check_version("v25.0") == "v25.0"
    assert check_version("v26.0") == "v26.0"
    for bad in ("25.0", "v25", "v25.1", "v0.0", "latest"):
        with pytest.raises(InvalidRequest, match=r"v\{N\}\.0"):
            check_version(bad)


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert verify(SECRET, body, expected)
    assert verify(SECRET, body, expected.upper().replace("SHA256=", "sha256="))
    assert not verify(SECRET, body + b" ", expected)
    assert not verify("other", body, expected)
    assert not verify(SECRET, body, None)
    assert not verify(SECRET, body, expected.removeprefix("sha256="))
    assert not verify("", body, sign("", body))


def _request(body: bytes, header: str | None) -> WebhookRequest:
    headers = {} if header is None else {"x-hub-signature-256": header}
    return WebhookRequest("POST", {}, headers, body)


def test_check_signature_says_what_is_wrong_without_the_secret() -> None:
    body = b"{}"
    check_signature(SECRET, _request(body, sign(SECRET, body)))
    with pytest.raises(AuthError, match="unsigned") as unsigned:
        check_signature(SECRET, _request(body, None))
    with pytest.raises(AuthError, match="bad x-hub-signature-256") as bad:
        check_signature(SECRET, _request(body, sign("wrong", body)))
    with pytest.raises(AuthError, match="app_secret"):
        check_signature("", _request(body, sign("", body)))
    assert SECRET not in str(unsigned.value) + str(bad.value)


def test_handshake_echoes_the_challenge_or_refuses() -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"}
    reply = handshake(good, "vt")
    assert (reply.status, reply.body, reply.content_type) == (200, b"1158201444", "text/plain")
    for query in (
        {**good, "hub.verify_token": "nope"},
        {**good, "hub.mode": "unsubscribe"},
        {k: v for k, v in good.items() if k != "hub.challenge"},
        {},
    ):
        assert handshake(query, "vt").status == 403
    assert handshake(good, "").status == 403


def _envelope(code: int, subcode: int | None = None, status: int = 400) -> GraphError:
    error: dict[str, object] = {
        "message": f"(#{code}) something",
        "type": "OAuthException",
        "code": code,
        "error_data": {"details": "the details"},
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return GraphError.parse(status, json.dumps({"error": error}).encode())


def test_error_envelope_is_read_and_classified_by_code() -> None:
    error = _envelope(190, 463, 401)
    assert (error.code, error.subcode, error.type) == (190, 463, "OAuthException")
    assert error.fbtrace_id == "Az8or2yhqkZfEZ-_4Qn_Bam"
    assert "code 190/463" in error.describe() and "the details" in error.describe()
    assert classify(error).action is Action.PAUSE
    assert classify(_envelope(2)).action is Action.RETRY
    assert classify(_envelope(4)).action is Action.PACE
    assert classify(_envelope(100)).action is Action.PERMANENT
    # A pair overrides its code; an unknown code goes by the HTTP status.
    rules = {**GRAPH_RULES, (10, 2018278): GRAPH_RULES[100]}
    assert classify(_envelope(10, 2018278), rules) is GRAPH_RULES[100]
    assert classify(_envelope(999_999, status=503)).action is Action.RETRY
    assert classify(_envelope(999_999, status=429)).action is Action.PACE
    assert classify(_envelope(999_999, status=400)).action is Action.PERMANENT
    # Not Graph's envelope: the status alone.
    page = GraphError.parse(502, b"<html>Bad Gateway</html>")
    assert page.code is None and classify(page).action is Action.RETRY


async def _graph(request: Request) -> Response:
    auth = request.headers.get("authorization")
    if auth != "Bearer good-token":
        return JSONResponse(
            {"error": {"message": "Invalid OAuth access token", "code": 190, "type": "OAuth"}},
            status_code=401,
        )
    what = request.path_params["what"]
    if what == "throttled":
        return JSONResponse(
            {"error": {"message": "(#4) Application request limit reached", "code": 4}},
            status_code=400,
        )
    if what == "broken":
        return Response(b"upstream died", status_code=502)
    if what == "file":
        return Response(b"x" * 100_000, media_type="image/jpeg")
    return JSONResponse({"path": request.url.path, "body": json.loads(await request.body())})


@pytest.fixture
async def client() -> AsyncIterator[GraphClient]:
    app = Starlette(routes=[Route("/{version}/{what:path}", _graph, methods=["GET", "POST"])])
    async with serving(app) as url:
        graph = GraphClient(url, "v26.0", where="Test")
        yield graph
        await graph.close()


async def test_client_sends_the_bearer_token_and_reads_errors(client: GraphClient) -> None:
    answer = await client.call("POST", "123/messages", "good-token", json={"a": 1})
    assert answer == {"path": "/v26.0/123/messages", "body": {"a": 1}}
    with pytest.raises(GraphFailure) as paused:
        await client.call("POST", "x", "bad-token", json={})
    assert paused.value.rule.action is Action.PAUSE
    exc = paused.value.delivery(account="acct")
    assert isinstance(exc, AccountPaused) and isinstance(exc, RetryableDelivery)
    assert exc.account == "acct" and "bad-token" not in str(exc)
    with pytest.raises(GraphFailure) as throttled:
        await client.call("POST", "throttled", "good-token", json={})
    assert throttled.value.rule.action is Action.PACE
    with pytest.raises(GraphFailure) as broken:
        await client.call("POST", "broken", "good-token", json={})
    assert broken.value.rule.action is Action.RETRY
    assert not isinstance(broken.value.delivery(), PermanentDelivery)
    async with client.download(client.url("file"), "good-token") as (mime, chunks):
        size = sum([len(chunk) async for chunk in chunks])
    assert (mime, size) == ("image/jpeg", 100_000)
    with pytest.raises(GraphFailure) as refused:
        async with client.download(client.url("file"), "bad-token"):
            pass
    assert refused.value.rule.action is Action.PAUSE


async def test_unreachable_graph_is_retryable() -> None:
    client = GraphClient("http://127.0.0.1:9", "v25.0", timeout=2)
    with pytest.raises(RetryableDelivery, match="Graph API POST"):
        await client.call("POST", "1/messages", "t", json={})
    await client.close()
