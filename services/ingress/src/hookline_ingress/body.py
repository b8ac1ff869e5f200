"""Reading a webhook's body: chunk by chunk into the signature check, within the size
limit, the body deadline, and one budget of bytes in flight shared by every connection,
so that what unauthenticated clients send can never pin more memory than the budget."""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import web

from hookline_ingress.intake import BodyMac, Refusal

# How long a client refused for the budget is told to wait (``Retry-After``): long
# enough for the uploads that hold it to end or hit the body deadline.
RETRY_AFTER = 5


class ByteBudget:
    """Bytes of request bodies held in memory across all connections, capped."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0

    def lease(self) -> Lease:
        return Lease(self)


class Lease:
    """What one request holds of the budget; all of it goes back when the request ends."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        budget = self.budget
        if budget.in_use + size > budget.capacity:
            raise Refusal(
                503,
                "busy",
                "too many request bytes in flight (HOOKLINE_INGRESS_MAX_BYTES_IN_FLIGHT): "
                f"retry in {RETRY_AFTER}s",
                "unavailable",
            )
        budget.in_use += size
        self.held += size

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.budget.in_use -= self.held
        self.held = 0


async def read_body(
    request: web.Request, mac: BodyMac | None, lease: Lease, max_body: int, deadline: float
) -> list[bytes]:
    """The body's chunks, each fed to ``mac`` and charged to ``lease`` as it arrives
    (joined only once the signature is checked, so a wrong one never costs a copy);
    refused past ``max_body`` bytes (413), past ``deadline`` seconds (408), or when the
    budget is spent (503)."""
    if request.content.is_eof():  # already all here: no deadline to arm
        return await _collect(request, mac, lease, max_body)
    try:
        async with asyncio.timeout(deadline):
            return await _collect(request, mac, lease, max_body)
    except TimeoutError:
        raise Refusal(
            408, "body_timeout", "the body did not arrive within the body deadline"
        ) from None


async def _collect(
    request: web.Request, mac: BodyMac | None, lease: Lease, max_body: int
) -> list[bytes]:
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > max_body:
            raise too_large(max_body)
        lease.take(len(chunk))
        if mac is not None:
            mac.update(chunk)
        chunks.append(chunk)
    return chunks


def joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"the body exceeds {limit} bytes")
