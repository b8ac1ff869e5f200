"""Baseline (b): the floor of this design's cost. A bare aiohttp handler that checks the
HMAC and does one XADD; nothing else (no dedupe, metrics, logging or spool)."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

import redis.asyncio as aioredis
import uvloop
from aiohttp import web

SECRET = os.environ["GITHUB_WEBHOOK_SECRET"].encode()
STREAM = "bench:bare:webhooks"


async def webhook(request: web.Request) -> web.Response:
    body = await request.read()
    given = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return web.json_response({"error": "invalid_signature"}, status=401)
    delivery = request.headers.get("X-GitHub-Delivery", "")
    await request.app["redis"].xadd(STREAM, {"d": delivery, "p": body})
    return web.json_response({"message": "queued", "delivery": delivery}, status=202)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=25 * 1024 * 1024)
    app["redis"] = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    app.router.add_post("/webhook", webhook)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
