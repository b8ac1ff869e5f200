"""POST /webhook against a real Redis, over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hookline.events import WebhookReceived, decode
from hookline.ids import job_id_for_delivery
from hookline.keys import EVENT_FIELD, Keys
from hookline_ingress.app import create_app
from hookline_ingress.settings import load
from support.http import serve
from support.payloads import payload, signed_headers

SECRET = "test-secret-0123456789"


@pytest.fixture
async def client(
    redis_url: str, prefix: str, tmp_path: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = load(
        {
            "REDIS_URL": redis_url,
            "HOOKLINE_PREFIX": prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_STATUS_URL": "http://status.example:5002",
            "HOOKLINE_INGRESS_MAX_BODY": str(64 * 1024),
            "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    async with serve(create_app(settings)) as client:
        yield client


async def stream_length(redis: Any, keys: Keys) -> int:
    return int(await redis.xlen(keys.webhook_received))


async def test_signed_push_is_accepted_and_appended(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    body = payload("push", "with-new-branch.payload.json")
    headers = signed_headers(SECRET, body, "push", delivery="delivery-1")
    reply = await client.post("/webhook", data=body, headers=headers)
    assert reply.status == 202
    answer = await reply.json()
    job_id = job_id_for_delivery("delivery-1")
    assert answer == {
        "message": "Webhook accepted for https://github.com/Codertocat/Hello-World: queued "
        "for the dispatcher, which runs the pipeline of the route it matches (or skips "
        "it); follow status_url",
        "outcome": "accepted",
        "job_id": job_id,
        "status_url": f"http://status.example:5002/jobs/{job_id}",
    }
    [(_, fields)] = await redis.xrange(keys.webhook_received)
    event = decode(fields[EVENT_FIELD])
    assert isinstance(event, WebhookReceived)
    assert event.delivery_id == "delivery-1"
    assert event.job_id == job_id
    assert event.event == "push"
    assert event.repository == "Codertocat/Hello-World"
    assert bytes(event.payload) == body.strip()


async def test_a_redelivery_names_the_same_job_and_appends_nothing(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    body = payload("push", "with-new-branch.payload.json")
    headers = signed_headers(SECRET, body, "push", delivery="again")
    first = await (await client.post("/webhook", data=body, headers=headers)).json()
    second_reply = await client.post("/webhook", data=body, headers=headers)
    assert second_reply.status == 202
    second = await second_reply.json()
    assert (first["outcome"], second["outcome"]) == ("accepted", "duplicate")
    assert second["message"].startswith("Duplicate delivery for https://github.com/Codertocat/")
    assert (second["job_id"], second["status_url"]) == (first["job_id"], first["status_url"])
    assert await stream_length(redis, keys) == 1


async def test_concurrent_deliveries_of_one_id_make_one_entry(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    body = payload("pull_request", "opened.payload.json")
    headers = signed_headers(SECRET, body, "pull_request", delivery="race")
    replies = await asyncio.gather(
        *(client.post("/webhook", data=body, headers=headers) for _ in range(20))
    )
    assert {r.status for r in replies} == {202}
    assert len({(await r.json())["job_id"] for r in replies}) == 1
    assert await stream_length(redis, keys) == 1


BODY = payload("push", "with-new-branch.payload.json")


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        (
            {"X-GitHub-Delivery": "x", "X-Hub-Signature-256": "sha256=00"},
            BODY,
            400,
            "missing_header",
        ),
        (
            {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"},
            BODY,
            400,
            "missing_header",
        ),
        ({"X-GitHub-Event": "push", "X-GitHub-Delivery": "x"}, BODY, 401, "invalid_signature"),
        (
            {
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "x",
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
            },
            BODY,
            401,
            "invalid_signature",
        ),
    ],
)
async def test_bad_headers_get_a_json_error_and_queue_nothing(
    client: TestClient[Any, Any],
    redis: Any,
    keys: Keys,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
) -> None:
    reply = await client.post(
        "/webhook", data=body, headers={"Content-Type": "application/json", **headers}
    )
    assert reply.status == status
    answer = await reply.json()
    assert answer["error"] == error
    assert answer["detail"]
    assert await stream_length(redis, keys) == 0


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json at all", 400, "invalid_json"),
        (b"[1, 2, 3]", 422, "invalid_payload"),
        (b'"a string"', 422, "invalid_payload"),
        (b"", 400, "invalid_json"),
    ],
)
async def test_a_signed_body_that_is_not_a_json_object_is_refused(
    client: TestClient[Any, Any], redis: Any, keys: Keys, body: bytes, status: int, error: str
) -> None:
    reply = await client.post("/webhook", data=body, headers=signed_headers(SECRET, body, "push"))
    assert reply.status == status
    assert (await reply.json())["error"] == error
    assert await stream_length(redis, keys) == 0


async def test_a_body_over_the_limit_is_refused_with_413(
    client: TestClient[Any, Any], redis: Any, keys: Keys
) -> None:
    body = json.dumps({"blob": "x" * (70 * 1024)}).encode()
    reply = await client.post("/webhook", data=body, headers=signed_headers(SECRET, body, "push"))
    assert reply.status == 413
    assert (await reply.json())["error"] == "payload_too_large"
    assert await stream_length(redis, keys) == 0


async def test_health_and_metrics_answer(client: TestClient[Any, Any]) -> None:
    body = payload("push", "with-new-branch.payload.json")
    await client.post("/webhook", data=body, headers=signed_headers(SECRET, body, "push"))
    health = await client.get("/health")
    assert health.status == 200
    assert (await health.json())["redis_connected"] is True
    metrics = await (await client.get("/metrics")).text()
    assert 'hookline_webhooks_total{event="push",outcome="accepted"} 1.0' in metrics
