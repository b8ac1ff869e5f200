"""Identifiers: deterministic job ids, fresh event ids."""

from __future__ import annotations

import os
import uuid

# A fixed namespace: the same delivery id names the same job on every machine, forever.
_JOB_NAMESPACE = uuid.UUID("6f1c4b7e-2f52-5d8e-9a61-3b0f6c2d9e10")


def job_id_for_delivery(delivery_id: str) -> str:
    """The job id of a GitHub delivery: redeliveries and replays never fork a job."""
    return str(uuid.uuid5(_JOB_NAMESPACE, delivery_id))


def new_event_id() -> str:
    """A random 128-bit id, hex encoded (cheaper than uuid4's string form)."""
    return os.urandom(16).hex()
