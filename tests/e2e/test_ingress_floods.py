"""The ingress as a real process under attack from unauthenticated clients: large
wrong-signature uploads, sockets that dribble, malformed requests aiohttp's parser
refuses. Memory, connections and logs stay within what the settings promise."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from hookline import signing
from support.http import raw_http, status_and_body
from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, post_webhook
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

MIB = 1 << 20
PUSH = payload("push", "with-new-branch.payload.json")


def started(services: list[ServiceProcess], env: dict[str, str], tmp_path: Path) -> ServiceProcess:
    ingress = ServiceProcess("ingress", env, tmp_path / "logs")
    services.append(ingress.start())
    return ingress


def rss_kib(ingress: ServiceProcess, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of the process, in KiB."""
    assert ingress.process is not None
    status = Path(f"/proc/{ingress.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def head(length: int, signature: str, delivery: str, extra: str = "") -> bytes:
    return (
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def upload(port: int, body: bytes, delivery: str) -> int | None:
    """Send ``body`` with a wrong signature in 256 KiB pieces; the answer's status, or
    None when the server closed the connection before answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head(len(body), "sha256=" + "0" * 64, delivery))
        view = memoryview(body)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(body), 256 * 1024):
                writer.write(view[start : start + 256 * 1024])
                await writer.drain()
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            async with asyncio.timeout(30):
                answer = await reader.readuntil(b"\r\n\r\n")
                return status_and_body(answer)[0]
        return None
    finally:
        writer.close()


async def flood(port: int, connections: int, size: int) -> list[int | None]:
    body = b"x" * size
    return await asyncio.gather(*(upload(port, body, f"flood-{n}") for n in range(connections)))


BUDGET = 32 * MIB


async def first_503(port: int, request: bytes, what: str) -> bytes:
    """Send ``request`` on a new connection until the answer is a 503 (the state that
    causes it may take a moment to arrive); that answer."""
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        if b" 503 " in answer.split(b"\r\n", 1)[0]:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_wrong_signature_uploads_cannot_pin_more_memory_than_the_budget(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    """40 connections of 8 MiB each with a wrong signature at once (320 MiB offered): the
    process's peak RSS grows by less than the bytes-in-flight budget plus a margin, the
    uploads beyond the budget are refused with 503, and real deliveries still pass."""
    env = {
        **base_env,
        "HOOKLINE_INGRESS_MAX_BODY": str(8 * MIB),
        "HOOKLINE_INGRESS_MAX_BYTES_IN_FLIGHT": str(BUDGET),
    }
    ingress = started(services, env, tmp_path)
    before = rss_kib(ingress, "VmRSS")

    statuses = asyncio.run(flood(ingress.port, connections=40, size=8 * MIB))

    grown = (rss_kib(ingress, "VmHWM") - before) * 1024
    print(f"peak RSS grew by {grown / MIB:.1f} MiB for 320 MiB offered (budget 32 MiB)")
    assert grown < BUDGET + 40 * MIB
    assert set(statuses) <= {401, 503, None}
    assert 503 in statuses  # the budget was reached and said so
    assert 401 in statuses  # what fitted was read, checked and refused
    secret = env["GITHUB_WEBHOOK_SECRET"]
    status, answer = post_webhook(ingress.url, PUSH, signed_headers(secret, PUSH, "push"))
    assert status == 202, answer


def test_a_refusal_for_the_budget_says_when_to_retry(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {
        **base_env,
        "HOOKLINE_INGRESS_MAX_BODY": str(MIB),
        "HOOKLINE_INGRESS_MAX_BYTES_IN_FLIGHT": str(MIB),
    }
    ingress = started(services, env, tmp_path)

    async def scenario() -> bytes:
        # One upload holds the whole budget (its body arrives, its last byte does not)...
        body = b"x" * MIB
        signature = signing.sign(env["GITHUB_WEBHOOK_SECRET"], body)
        _, holder = await asyncio.open_connection("127.0.0.1", ingress.port)
        holder.write(head(len(body), signature, "holder") + body[:-1])
        await holder.drain()
        try:
            # ... so the next one, however small, is refused at once (once the holder's
            # bytes have all arrived).
            second = head(len(PUSH), signature, "second", "Connection: close\r\n") + PUSH
            return await first_503(ingress.port, second, "the budget to fill")
        finally:
            holder.close()

    answer = asyncio.run(scenario())
    status, body = status_and_body(answer)
    assert status == 503
    assert b"\r\nretry-after: " in answer.lower()
    assert json.loads(body)["error"] == "busy"


def test_sockets_that_never_finish_their_headers_are_closed_by_the_deadline(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    """A slowloris: 30 sockets dribble one header line every 200 ms and never end the
    headers; each is closed by the server at the 1 s header deadline, not held."""
    env = {**base_env, "HOOKLINE_INGRESS_HEADER_TIMEOUT": "1s"}
    ingress = started(services, env, tmp_path)

    async def dribble(n: int) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
        try:
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
            async with asyncio.timeout(8):
                for line in range(1000):
                    writer.write(b"X-Slow-%d-%d: 1\r\n" % (n, line))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            if await reader.read(1024) == b"":
                                break  # closed by the server
            return loop.time() - started
        except ConnectionError:
            return loop.time() - started
        finally:
            writer.close()

    async def attack() -> list[float]:
        return await asyncio.gather(*(dribble(n) for n in range(30)))

    held = asyncio.run(attack())
    print(f"slowloris sockets held for at most {max(held):.2f}s (deadline 1s)")
    assert max(held) < 4.0


def test_connections_beyond_the_cap_are_refused_with_json(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {**base_env, "HOOKLINE_INGRESS_MAX_CONNECTIONS": "5"}
    ingress = started(services, env, tmp_path)

    async def scenario() -> bytes:
        idle = [await asyncio.open_connection("127.0.0.1", ingress.port) for _ in range(5)]
        try:
            request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            return await first_503(ingress.port, request, "the cap to refuse")
        finally:
            for _, writer in idle:
                writer.close()

    status, body = status_and_body(asyncio.run(scenario()))
    assert status == 503
    assert json.loads(body)["error"] == "too_many_connections"
    secret = env["GITHUB_WEBHOOK_SECRET"]

    def served() -> bool:
        return post_webhook(ingress.url, PUSH, signed_headers(secret, PUSH, "push"))[0] == 202

    wait_until(served, timeout=10, what="a delivery once the idle sockets closed")


TOKEN = "ghp_tokenThatMustNeverBeLogged0123456789"
REQUEST = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
MALFORMED = [
    pytest.param(f"Authorization: Bearer {TOKEN}{'p' * 9000}\r\n\r\n", 431, id="long-header"),
    pytest.param(
        f"Authorization: Bearer {TOKEN}\r\n"
        + "".join(f"X-Extra-{n}: 1\r\n" for n in range(80))
        + "\r\n",
        431,
        id="too-many-headers",
    ),
    pytest.param(f"Authorization: Bearer {TOKEN}\rX-Evil: 1\r\n\r\n", 400, id="bare-cr"),
    pytest.param(
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}",
        400,
        id="duplicate-content-length",
    ),
    pytest.param(
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 2\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        id="cl-and-te",
    ),
]


def test_requests_the_parser_refuses_get_json_and_leave_no_token_in_the_log(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {**base_env, "HOOKLINE_LOG_LEVEL": "debug"}
    ingress = started(services, env, tmp_path)

    async def send(rest: str) -> bytes:
        return await raw_http("127.0.0.1", ingress.port, (REQUEST + rest).encode(), [])

    for case in MALFORMED:
        rest, expected = case.values
        answer = asyncio.run(send(str(rest)))
        status, body = status_and_body(answer)
        assert status == expected, (case.id, answer[:200])
        assert b"application/json" in answer.split(b"\r\n\r\n", 1)[0].lower()
        refusal = json.loads(body)
        assert set(refusal) == {"error", "detail"}
        assert TOKEN not in refusal["detail"]
    wait_until(
        lambda: ingress.logs().count("request_refused") >= len(MALFORMED),
        timeout=10,
        what="a log line for every refusal",
    )
    assert TOKEN not in ingress.logs()
    assert TOKEN[:12] not in ingress.logs()
