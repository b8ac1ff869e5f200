"""Real GitHub payloads from ``shared/github-payloads`` (beside the repository)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import msgspec
from hookline import signing
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.keys import EVENT_FIELD, Keys

REPO = Path(__file__).resolve().parents[2]


def payloads_dir() -> Path:
    candidates = [
        Path(os.environ["HOOKLINE_PAYLOADS"]) if os.environ.get("HOOKLINE_PAYLOADS") else None,
        REPO.parent / "shared" / "github-payloads",
        REPO / "shared" / "github-payloads",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_dir():
            return candidate
    raise AssertionError(
        "real GitHub payloads not found: expected ../shared/github-payloads beside the "
        "repository, or set HOOKLINE_PAYLOADS to that folder"
    )


def payload(event: str, name: str = "payload.json") -> bytes:
    """The bytes of ``shared/github-payloads/<event>/<name>``, unchanged."""
    return (payloads_dir() / event / name).read_bytes()


def signed_headers(
    secret: str, body: bytes, event: str, delivery: str | None = None
) -> dict[str, str]:
    """The headers GitHub sends with ``body``."""
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signing.sign(secret, body),
    }


def append_webhook(client: Any, keys: Keys, event: str, name: str, delivery: str) -> str:
    """Append a ``webhook.received`` of a real payload straight to the stream (as the
    ingress would) and return its job id."""
    body = payload(event, name)
    job_id = job_id_for_delivery(delivery)
    received = WebhookReceived(
        delivery_id=delivery,
        job_id=job_id,
        event=event,
        action=json.loads(body).get("action"),
        payload=msgspec.Raw(body),
    )
    client.xadd(keys.webhook_received, {EVENT_FIELD: encode(received)})
    return job_id
