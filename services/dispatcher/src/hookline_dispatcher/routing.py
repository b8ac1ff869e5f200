"""Routing: a delivery and the config in, a job spec or a skip reason out. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from hookline.events import Backoff, JobSpec, Meta, run_of
from msgspec.structs import replace

from hookline_dispatcher.config import Pipeline, Route, RoutingConfig

SkipKind = Literal["no_route", "deleted_ref", "draft", "bad_payload"]


@dataclass(frozen=True, slots=True)
class Routed:
    spec: JobSpec
    route: Route
    index: int = 0


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str
    kind: SkipKind = "no_route"


def route(
    meta: Meta, config: RoutingConfig, received_at: datetime | None = None
) -> Routed | Skipped:
    """The first route that matches ``meta`` (see :func:`hookline.github.extract_meta`).

    A route or pipeline ``delay`` sets the spec's ``not_before`` to ``received_at`` plus
    the delay."""
    for index, candidate in enumerate(config.routes):
        if matches(candidate, meta):
            pipeline = config.pipelines[candidate.pipeline]
            delay = candidate.delay if candidate.delay is not None else pipeline.delay
            not_before = received_at + timedelta(seconds=delay) if delay and received_at else None
            spec = build_spec(candidate.pipeline, pipeline, meta, not_before)
            return Routed(spec, candidate, index)
    event = meta.get("event")
    action = meta.get("action")
    what = f"{event}.{action}" if action else str(event)
    where = meta.get("repository") or "no repository"
    if meta.get("deleted"):
        ref = meta.get("branch") or meta.get("tag") or meta.get("ref")
        return Skipped(f"{what} deletes {ref} on {where}: nothing to build", "deleted_ref")
    if meta.get("draft") and any(
        r.skip_drafts and matches(_with_drafts(r), meta) for r in config.routes
    ):
        return Skipped(f"{what} on {where} is a draft pull request", "draft")
    return Skipped(f"no route matches {what} on {where}")


def _with_drafts(candidate: Route) -> Route:
    return replace(candidate, skip_drafts=False)


def supersede_slot(index: int, meta: Meta) -> str:
    """What "the same repository and branch" means for route ``index``: a digest that
    names its newest job's slot (tags and pull requests count as branches here)."""
    parts = [
        str(index),
        str(meta.get("repository") or ""),
        str(meta.get("branch") or ""),
        str(meta.get("tag") or ""),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def matches(candidate: Route, meta: Meta) -> bool:
    if candidate.events and meta.get("event") not in candidate.events:
        return False
    if candidate.actions and meta.get("action") not in candidate.actions:
        return False
    if candidate.repositories and not _glob_any(meta.get("repository"), candidate.repositories):
        return False
    if candidate.skip_drafts and meta.get("draft"):
        return False
    if meta.get("deleted"):
        return False  # a deleted branch or tag has nothing to build
    if candidate.branches or candidate.tags:
        branch_ok = bool(candidate.branches) and _glob_any(meta.get("branch"), candidate.branches)
        tag_ok = bool(candidate.tags) and _glob_any(meta.get("tag"), candidate.tags)
        if not (branch_ok or tag_ok):
            return False
    return True


def _glob_any(value: object, patterns: list[str]) -> bool:
    return isinstance(value, str) and any(fnmatchcase(value, p) for p in patterns)


def fill_template(argv: list[str], meta: Meta) -> list[str]:
    """Fill ``{placeholder}``s of an argv template; missing values become ''. Each item
    stays one argument: nothing is ever passed through a shell."""
    values = {k: "" if v is None else str(v) for k, v in meta.items()}
    return [_format(arg, values) for arg in argv]


def _format(template: str, values: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "{" and template.startswith("{{", i):
            out.append("{")
            i += 2
        elif ch == "}" and template.startswith("}}", i):
            out.append("}")
            i += 2
        elif ch == "{":
            end = template.index("}", i)
            out.append(values.get(template[i + 1 : end], ""))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def build_spec(
    name: str, pipeline: Pipeline, meta: Meta, not_before: datetime | None = None
) -> JobSpec:
    return JobSpec(
        pipeline=name,
        queue=pipeline.queue,
        run=run_of(
            fill_template(pipeline.command, meta) if pipeline.command is not None else None,
            pipeline.handler,
        ),
        timeout=float(pipeline.timeout),
        env=dict(pipeline.env),
        retries=pipeline.retries,
        backoff=Backoff(
            kind=pipeline.backoff.kind,
            base=float(pipeline.backoff.base),
            cap=float(pipeline.backoff.cap),
        ),
        no_retry_on=list(pipeline.no_retry_on),
        result_ttl=float(pipeline.result_ttl),
        failure_ttl=float(pipeline.failure_ttl),
        not_before=not_before,
    )
