"""POST /webhook input paths against a real Redis and real sockets: content types, ping,
the event allow-list, legacy signatures, and the bad-input matrix (each case asserts the
status, the error body, and that nothing was queued or spooled)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from hookline import signing
from hookline.events import WebhookReceived, decode
from hookline.keys import EVENT_FIELD, Keys
from hookline_ingress.app import SPOOL, create_app
from hookline_ingress.intake import MAX_DEPTH
from hookline_ingress.settings import load
from support import http as support_http
from support.http import serve, status_and_body
from support.payloads import payload, signed_headers

SECRET = "test-secret-0123456789"
LIMIT = 64 * 1024
PUSH = payload("push", "with-new-branch.payload.json")

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(redis_url: str, prefix: str, tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Any] = []

    async def make(**env: str) -> TestClient[Any, Any]:
        settings = load(
            {
                "REDIS_URL": redis_url,
                "HOOKLINE_PREFIX": prefix,
                "GITHUB_WEBHOOK_SECRET": SECRET,
                "HOOKLINE_INGRESS_MAX_BODY": str(LIMIT),
                "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / f"spool{len(clients)}"),
                **env,
            }
        )
        context = serve(create_app(settings))
        client = await context.__aenter__()
        clients.append(context)
        return client

    yield make
    for context in reversed(clients):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client()


async def assert_nothing_queued(client: TestClient[Any, Any], redis: Any, keys: Keys) -> None:
    assert await redis.xlen(keys.webhook_received) == 0
    assert await redis.keys(keys.delivery("*")) == []
    assert client.app is not None
    assert client.app[SPOOL].depth == 0


async def metric(client: TestClient[Any, Any], line: str) -> bool:
    text = await (await client.get("/metrics")).text()
    return line in text


async def raw_http(client: TestClient[Any, Any], head: bytes, body_parts: list[bytes]) -> bytes:
    assert client.port is not None
    return await support_http.raw_http(client.host, client.port, head, body_parts)


def request_head(extra: str, content_type: str = "application/json") -> bytes:
    return (
        "POST /webhook HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: {content_type}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: raw-1\r\n"
        f"X-Hub-Signature-256: sha256={'0' * 64}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


# -- accepted shapes -------------------------------------------------------------------


async def test_a_form_encoded_delivery_is_accepted_with_the_json_from_payload(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    form = urlencode({"payload": PUSH.decode()}).encode()
    headers = signed_headers(SECRET, form, "push")  # GitHub signs the raw form body
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    reply = await client.post("/webhook", data=form, headers=headers)
    assert reply.status == 202, await reply.text()
    [(_, fields)] = await redis.xrange(keys.webhook_received)
    event = decode(fields[EVENT_FIELD])
    assert isinstance(event, WebhookReceived)
    assert json.loads(bytes(event.payload)) == json.loads(PUSH)
    assert event.repository == "Codertocat/Hello-World"


async def test_a_json_delivery_with_a_charset_is_accepted(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    headers = signed_headers(SECRET, PUSH, "push")
    headers["Content-Type"] = "application/json; charset=utf-8"
    assert (await client.post("/webhook", data=PUSH, headers=headers)).status == 202
    assert await redis.xlen(keys.webhook_received) == 1


async def test_ping_answers_pong_and_queues_nothing(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    body = payload("ping")
    reply = await client.post(
        "/webhook", data=body, headers=signed_headers(SECRET, body, "ping", delivery="p-1")
    )
    assert reply.status == 200
    answer = await reply.json()
    assert (answer["message"], answer["outcome"]) == ("pong", "ping")
    assert answer["delivery_id"] == "p-1"
    assert answer["zen"] == json.loads(body)["zen"]
    await assert_nothing_queued(client, redis, keys)
    assert await metric(client, 'hookline_webhooks_total{event="ping",outcome="ignored"} 1.0')


async def test_events_outside_the_allow_list_are_ignored_and_counted(
    make_client: MakeClient, redis: Any, keys: Keys
) -> None:
    client = await make_client(HOOKLINE_INGRESS_EVENTS="push,pull_request")
    body = payload("star", "created.payload.json")
    reply = await client.post("/webhook", data=body, headers=signed_headers(SECRET, body, "star"))
    assert reply.status == 202
    answer = await reply.json()
    assert (answer["message"], answer["outcome"]) == ("ignored", "ignored")
    assert "star" in answer["detail"]
    await assert_nothing_queued(client, redis, keys)
    assert await metric(client, 'hookline_webhooks_total{event="star",outcome="ignored"} 1.0')
    ok = await client.post("/webhook", data=PUSH, headers=signed_headers(SECRET, PUSH, "push"))
    assert ok.status == 202
    assert await redis.xlen(keys.webhook_received) == 1


async def test_a_rotated_secret_still_verifies(
    make_client: MakeClient, redis: Any, keys: Keys
) -> None:
    client = await make_client(GITHUB_WEBHOOK_SECRET="brand-new-secret-0123,test-secret-0123456789")
    for secret in ("brand-new-secret-0123", "test-secret-0123456789"):
        reply = await client.post(
            "/webhook", data=PUSH, headers=signed_headers(secret, PUSH, "push")
        )
        assert reply.status == 202
    assert await redis.xlen(keys.webhook_received) == 2


async def test_insecure_mode_accepts_unsigned_deliveries(
    make_client: MakeClient, redis: Any, keys: Keys
) -> None:
    client = await make_client(GITHUB_WEBHOOK_SECRET="", HOOKLINE_INGRESS_INSECURE="1")
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "u",
    }
    assert (await client.post("/webhook", data=PUSH, headers=headers)).status == 202
    assert await redis.xlen(keys.webhook_received) == 1


# -- the bad-input matrix ----------------------------------------------------------------


def signed(body: bytes, **over: str) -> dict[str, str]:
    headers = signed_headers(SECRET, body, "push")
    for name, value in over.items():
        key = name.replace("_", "-")
        if value == "":
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


def _sha1_only(body: bytes) -> dict[str, str]:
    headers = signed(body, **{"X_Hub_Signature_256": ""})
    headers["X-Hub-Signature"] = "sha1=" + "a" * 40
    return headers


FORM = urlencode({"other": "1"}).encode()


@pytest.mark.parametrize(
    ("headers", "body", "status", "error", "outcome"),
    [
        (signed(PUSH, X_GitHub_Event=""), PUSH, 400, "missing_header", "rejected_input"),
        (signed(PUSH, X_GitHub_Delivery=""), PUSH, 400, "missing_header", "rejected_input"),
        (signed(PUSH, X_GitHub_Delivery="a}b{c"), PUSH, 400, "invalid_header", "rejected_input"),
        (signed(PUSH, X_GitHub_Event="PUSH!"), PUSH, 400, "invalid_header", "rejected_input"),
        (
            signed(PUSH, X_Hub_Signature_256=""),
            PUSH,
            401,
            "invalid_signature",
            "rejected_signature",
        ),
        (_sha1_only(PUSH), PUSH, 401, "invalid_signature", "rejected_signature"),
        (
            signed(PUSH, X_Hub_Signature_256=signing.sign("wrong", PUSH)),
            PUSH,
            401,
            "invalid_signature",
            "rejected_signature",
        ),
        (
            signed(PUSH, Content_Type="text/plain"),
            PUSH,
            415,
            "unsupported_media_type",
            "rejected_input",
        ),
        (
            signed(PUSH, Content_Type="multipart/form-data"),
            PUSH,
            415,
            "unsupported_media_type",
            "rejected_input",
        ),
        (
            signed(FORM, Content_Type="application/x-www-form-urlencoded"),
            FORM,
            400,
            "missing_payload",
            "rejected_input",
        ),
        (signed(b"{not json"), b"{not json", 400, "invalid_json", "rejected_input"),
        (signed(b"[1, 2]"), b"[1, 2]", 422, "invalid_payload", "rejected_input"),
        (signed(b"null"), b"null", 422, "invalid_payload", "rejected_input"),
        (
            signed(b'{"repository": 5}'),
            b'{"repository": 5}',
            422,
            "invalid_payload",
            "rejected_input",
        ),
    ],
)
async def test_bad_input_gets_a_clear_error_and_queues_nothing(
    client: TestClient[Any, Any],
    redis: Any,
    keys: Keys,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
    outcome: str,
) -> None:
    reply = await client.post("/webhook", data=body, headers=headers)
    assert reply.status == status
    answer = await reply.json()
    assert answer["error"] == error
    assert answer["detail"]
    await assert_nothing_queued(client, redis, keys)
    assert await metric(client, f'outcome="{outcome}"}} 1.0')


async def test_a_declared_oversize_body_is_refused_before_it_is_sent(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    """Content-Length says 1 GiB; only the headers are sent, and the 413 comes anyway."""
    answer = await raw_http(client, request_head(f"Content-Length: {1 << 30}\r\n"), [])
    status, body = status_and_body(answer)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    await assert_nothing_queued(client, redis, keys)


async def test_a_chunked_body_over_the_limit_is_cut_off_with_413(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    chunk = b"x" * 8192
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2)]
    answer = await raw_http(
        client, request_head("Transfer-Encoding: chunked\r\n"), [*parts, b"0\r\n\r\n"]
    )
    status, body = status_and_body(answer)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    await assert_nothing_queued(client, redis, keys)


async def test_a_body_that_stalls_gets_408(make_client: MakeClient, redis: Any, keys: Keys) -> None:
    client = await make_client(HOOKLINE_INGRESS_BODY_TIMEOUT="200ms")
    answer = await raw_http(client, request_head("Content-Length: 100\r\n"), [b'{"a":'])
    status, body = status_and_body(answer)
    assert status == 408
    assert json.loads(body)["error"] == "body_timeout"
    await assert_nothing_queued(client, redis, keys)


@pytest.mark.parametrize(
    "extra",
    [
        "X-Padding: " + "p" * 9000 + "\r\n",  # one header far too long
        "".join(f"X-Extra-{n}: 1\r\n" for n in range(80)),  # far too many headers
    ],
)
async def test_oversize_headers_are_refused(
    client: TestClient[Any, Any], redis: Any, keys: Keys, extra: str
) -> None:
    answer = await raw_http(client, request_head(extra + "Content-Length: 2\r\n"), [b"{}"])
    status, _ = status_and_body(answer)
    assert status in (400, 431)
    await assert_nothing_queued(client, redis, keys)


def webhook_series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("hookline_webhooks_total{")]


async def test_unknown_event_names_do_not_grow_the_metrics(
    client: TestClient[Any, Any],
) -> None:
    """A well-formed but unknown ``X-GitHub-Event``, signed or not, counts as ``other``:
    a flood of distinct names leaves ``/metrics`` exactly as many series as one did."""

    async def flood(start: int, count: int) -> None:
        for n in range(start, start + count):
            headers = signed(PUSH, X_GitHub_Event=f"made_up_{n}")
            headers["X-Hub-Signature-256"] = signing.sign("wrong-secret-0123456789", PUSH)
            assert (await client.post("/webhook", data=PUSH, headers=headers)).status == 401

    await flood(0, 5)
    before = await (await client.get("/metrics")).text()
    await flood(5, 300)
    after = await (await client.get("/metrics")).text()
    assert len(webhook_series(after)) == len(webhook_series(before))
    assert abs(len(after) - len(before)) < 64  # only the counts' digits changed
    assert 'hookline_webhooks_total{event="other",outcome="rejected_signature"} 305.0' in after
    assert "made_up_" not in after


def nested(levels: int) -> bytes:
    """A JSON object ``levels`` deep: ``{"a": [{"a": [ ... ]}]}``."""
    opens = "".join('{"a": ' if n % 2 == 0 else "[" for n in range(levels))
    closes = "".join("}" if n % 2 == 0 else "]" for n in reversed(range(levels)))
    return (opens + "1" + closes).encode()


def as_form(document: bytes) -> tuple[bytes, str]:
    return urlencode({"payload": document.decode()}).encode(), "application/x-www-form-urlencoded"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 980, 983, 5_000])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_a_payload_nested_too_deep_is_refused_before_it_is_stored(
    client: TestClient[Any, Any], redis: Any, keys: Keys, levels: int, form: bool
) -> None:
    body, kind = as_form(nested(levels)) if form else (nested(levels), "application/json")
    reply = await client.post("/webhook", data=body, headers=signed(body, Content_Type=kind))
    assert reply.status == 422
    answer = await reply.json()
    assert answer["error"] == "payload_too_deep"
    assert str(MAX_DEPTH) in answer["detail"]
    await assert_nothing_queued(client, redis, keys)


async def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_accepted(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    brackets = '[{\\"[' * 500  # inside a string (escaped quotes too): not nesting
    shallow = b'{"zen": "' + brackets.encode() + b'", "deep": ' + nested(MAX_DEPTH - 1) + b"}"
    for body in (shallow, nested(MAX_DEPTH)):
        reply = await client.post("/webhook", data=body, headers=signed(body))
        assert reply.status == 202, await reply.text()
    assert await redis.xlen(keys.webhook_received) == 2
