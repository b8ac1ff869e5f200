"""An app under test on a real loopback socket, with a client that talks to it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    server = TestServer(app, host="127.0.0.1", port=0)
    client: TestClient[web.Request, web.Application] = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def raw_http(host: str, port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send bytes over a plain socket and read one answer (head, then Content-Length
    bytes), whether or not the server has read the rest of the request."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)
        for part in body_parts:
            writer.write(part)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", answer)
            if length:
                answer += await reader.readexactly(int(length.group(1)))
            return answer
    finally:
        writer.close()


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
