"""Fuzzing the HTTP surfaces of real ingress and status processes: whatever arrives,
never a 5xx, never a crash, never a job from a bad request."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from hookline import signing
from hookline.keys import Keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.payloads import signed_headers
from support.processes import ServiceProcess
from support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

SECRET = "fuzz-secret-0123456789"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Target:
    def __init__(self, redis_url: str, prefix: str, tmp: Path) -> None:
        env = {
            "REDIS_URL": redis_url,
            "HOOKLINE_PREFIX": prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp / "spool"),
            "HOOKLINE_INGRESS_MAX_BODY": "65536",
        }
        self.keys = Keys(prefix)
        self.redis = sync_redis.Redis.from_url(redis_url)
        self.ingress = ServiceProcess("ingress", env, tmp).start()
        self.status = ServiceProcess("status", env, tmp).start()

    def request(
        self,
        port: int,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def received(self) -> int:
        return int(self.redis.xlen(self.keys.webhook_received))

    def stop(self) -> None:
        self.ingress.stop()
        self.status.stop()
        self.redis.close()


@pytest.fixture(scope="module")
def target(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    running = Target(redis_server.url, f"fz{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("fuzz"))
    yield running
    running.stop()


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@FUZZ
@given(
    body=st.binary(max_size=4096),
    event=HEADER_TEXT,
    delivery=HEADER_TEXT,
    signature=st.one_of(st.none(), HEADER_TEXT),
    content_type=HEADER_TEXT,
)
def test_unsigned_or_wrongly_signed_requests_never_queue_and_never_5xx(
    target: Target,
    body: bytes,
    event: str,
    delivery: str,
    signature: str | None,
    content_type: str,
) -> None:
    before = target.received()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": content_type}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    status, reply = target.request(target.ingress.port, "POST", "/webhook", body, headers)
    assert status < 500, reply
    assert status != 202 or signing.verify([SECRET], body, signature)
    assert target.received() == before
    if status >= 400:
        error = json.loads(reply)
        assert set(error) == {"error", "detail"}


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(value=JSON, garbage=st.booleans())
def test_signed_bodies_queue_exactly_when_they_are_json_objects(
    target: Target, value: Any, garbage: bool
) -> None:
    body = json.dumps(value).encode() + (b"\x00}" if garbage else b"")
    before = target.received()
    headers = signed_headers(SECRET, body, "push")
    status, reply = target.request(target.ingress.port, "POST", "/webhook", body, headers)
    assert status < 500, reply
    queued = isinstance(value, dict) and not garbage
    assert (status == 202) is queued, (status, reply)
    assert target.received() == before + (1 if queued else 0)


QUERY_KEYS = st.sampled_from(
    ["status", "limit", "cursor", "queue", "pipeline", "repository", "x", ""]
) | st.text(max_size=10)


@FUZZ
@given(
    query=st.dictionaries(QUERY_KEYS, st.text(max_size=30), max_size=5), job_id=st.text(max_size=60)
)
def test_status_answers_any_query_or_job_id_without_a_5xx(
    target: Target, query: dict[str, str], job_id: str
) -> None:
    status, reply = target.request(
        target.status.port, "GET", "/jobs?" + urllib.parse.urlencode(query)
    )
    assert status in (200, 400), reply
    body = json.loads(reply)
    assert ("jobs" in body) if status == 200 else (set(body) == {"error", "detail"})
    quoted = urllib.parse.quote(job_id, safe="")
    status, reply = target.request(target.status.port, "GET", f"/jobs/{quoted}")
    assert status in (404, 400), reply
    assert json.loads(reply)["error"]
