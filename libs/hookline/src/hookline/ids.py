"""Identifiers: deterministic job ids, fresh event ids."""

from __future__ import annotations

import hashlib
import os
import uuid

# A fixed namespace: the same delivery id names the same job on every machine, forever.
_JOB_NAMESPACE = uuid.UUID("6f1c4b7e-2f52-5d8e-9a61-3b0f6c2d9e10")
_NAMESPACE_BYTES = _JOB_NAMESPACE.bytes


def job_id_for_delivery(delivery_id: str) -> str:
    """The job id of a GitHub delivery: redeliveries and replays never fork a job.

    Exactly ``str(uuid.uuid5(_JOB_NAMESPACE, delivery_id))``, computed without building
    a UUID object (ingress derives one per webhook, on its hot path)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + delivery_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_event_id() -> str:
    """A random 128-bit id, hex encoded (cheaper than uuid4's string form)."""
    return os.urandom(16).hex()
