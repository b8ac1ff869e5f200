"""Real GitHub payloads (the copy the library ships in ``hookline/github_payloads``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from hookline import signing
from hookline.events import WebhookReceived, encode
from hookline.ids import job_id_for_delivery
from hookline.keys import EVENT_FIELD, Keys
from hookline.samples import sample


def payload(event: str, name: str = "payload.json") -> bytes:
    """The bytes of the shipped real payload ``<event>/<name>``, unchanged."""
    return sample(event, name)


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
