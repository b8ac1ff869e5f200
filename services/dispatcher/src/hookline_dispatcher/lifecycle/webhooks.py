"""What a webhook makes: routed into a job queued now or deferred until its route's
delay, or skipped, and whether it supersedes an older job. Pure: the delivery, the
config and the time in, a :class:`NewJob` out (the dispatcher turns it into one call
of the ``new_job`` script, which writes it unless the job is recorded already)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from hookline.events import JobCancelRequested, JobDeferred, JobFinished, JobQueued, JobSpec, Meta
from hookline.events import WebhookReceived as Received
from hookline.github import extract_meta
from hookline.keys import Keys

from hookline_dispatcher.config import RoutingConfig
from hookline_dispatcher.lifecycle.records import (
    delayed_data,
    member_of,
    ms,
    state_fields,
    ttl_ms,
)
from hookline_dispatcher.routing import Routed, Skipped, route, supersede_slot

# queue: its job.queued now; defer: its job.deferred now, its job.queued when due;
# skip: its job.finished (outcome skipped) and nothing to run.
Mode = Literal["queue", "defer", "skip"]

_payload_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class Delayed:
    """An attempt kept in the delayed set until ``due_ms`` (what the mover appends)."""

    member: str
    due_ms: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Supersede:
    """The job's claim on its route's slot (one job per repository and branch): the
    older of it and the slot's job gets ``cancel``, whose job id the script sets."""

    slot: str  # the slot's key
    value: str  # "<received ms> <job id>"
    ttl_ms: int
    cancel: JobCancelRequested


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job's record (``fields``) and first event (``event``, on ``stream``)."""

    job_id: str
    mode: Mode
    stream: str
    event: JobQueued | JobDeferred | JobFinished
    fields: list[object]
    queue: str = ""
    record_ttl_ms: int = 0  # 0: the record does not expire (it ends with its job)
    spec: JobSpec | None = None
    delayed: Delayed | None = None
    supersede: Supersede | None = None
    skipped: Skipped | None = None


def plan_new_job(
    keys: Keys, received: Received, config: RoutingConfig, now: datetime, skip_ttl_ms: int
) -> NewJob:
    """The job ``received`` makes; a skipped one's record lives ``skip_ttl_ms``."""
    try:
        payload: dict[str, Any] | None = _payload_decoder.decode(received.payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        payload = None
    meta = extract_meta(
        received.event, payload or {}, delivery_id=received.delivery_id, job_id=received.job_id
    )
    decision: Routed | Skipped = (
        route(meta, config, received.occurred_at)
        if payload is not None
        else Skipped("the payload is not a JSON object: nothing to route", "bad_payload")
    )
    if isinstance(decision, Skipped):
        return _skipped(keys, received, decision, meta, skip_ttl_ms)
    spec = decision.spec
    queued = JobQueued(
        job_id=received.job_id,
        delivery_id=received.delivery_id,
        attempt=1,
        spec=spec,
        meta=meta,
        payload=received.payload,
        created_at=received.occurred_at,
    )
    supersede = _supersede(keys, received, decision, meta) if decision.route.supersede else None
    if spec.not_before is not None and spec.not_before > now:
        return _deferred(keys, queued, spec.not_before, supersede)
    return NewJob(
        job_id=received.job_id,
        mode="queue",
        stream=keys.job_queued(spec.queue),
        event=queued,
        fields=state_fields(queued, "queued", 1),
        queue=spec.queue,
        spec=spec,
        supersede=supersede,
    )


def _skipped(keys: Keys, received: Received, skipped: Skipped, meta: Meta, ttl: int) -> NewJob:
    finished = JobFinished(
        job_id=received.job_id,
        delivery_id=received.delivery_id,
        attempt=0,
        outcome="skipped",
        reason=skipped.reason,
        meta=meta,
    )
    return NewJob(
        job_id=received.job_id,
        mode="skip",
        stream=keys.job_finished,
        event=finished,
        fields=["phase", "skipped", "attempt", 0],
        record_ttl_ms=ttl,
        skipped=skipped,
    )


def _deferred(
    keys: Keys, queued: JobQueued, not_before: datetime, supersede: Supersede | None
) -> NewJob:
    """Held until ``not_before``: job.deferred now, the job.queued (saying when it was
    due) appended by the mover."""
    spec = queued.spec
    upcoming = msgspec.structs.replace(queued, occurred_at=not_before)
    member = member_of(queued.job_id, 1)
    deferred = JobDeferred(
        job_id=queued.job_id,
        delivery_id=queued.delivery_id,
        attempt=1,
        queue=spec.queue,
        pipeline=spec.pipeline,
        not_before=not_before,
        reason="delayed by its route",
    )
    data = delayed_data(keys.job_queued(spec.queue), queued.job_id, upcoming)
    return NewJob(
        job_id=queued.job_id,
        mode="defer",
        stream=keys.job_deferred,
        event=deferred,
        fields=state_fields(upcoming, "deferred", 1, member=member),
        queue=spec.queue,
        spec=spec,
        delayed=Delayed(member, ms(not_before), data),
        supersede=supersede,
    )


def _supersede(keys: Keys, received: Received, routed: Routed, meta: Meta) -> Supersede:
    return Supersede(
        slot=keys.supersede_slot(supersede_slot(routed.index, meta)),
        value=f"{ms(received.occurred_at)} {received.job_id}",
        ttl_ms=ttl_ms(routed.spec, "failed"),
        cancel=JobCancelRequested(
            job_id=received.job_id, requested_by=f"supersede: newer job {received.job_id}"
        ),
    )
