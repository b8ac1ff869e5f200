"""Routing: a delivery and the config in, a job spec or a skip reason out. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from hookline.events import Backoff, JobSpec, Meta

from hookline_dispatcher.config import Pipeline, Route, RoutingConfig


@dataclass(frozen=True, slots=True)
class Routed:
    spec: JobSpec
    route: Route


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


def route(meta: Meta, config: RoutingConfig) -> Routed | Skipped:
    """The first route that matches ``meta`` (see :func:`hookline.github.extract_meta`)."""
    for candidate in config.routes:
        if matches(candidate, meta):
            pipeline = config.pipelines[candidate.pipeline]
            return Routed(build_spec(candidate.pipeline, pipeline, meta), candidate)
    event = meta.get("event")
    action = meta.get("action")
    what = f"{event}.{action}" if action else str(event)
    return Skipped(f"no route matches {what} on {meta.get('repository') or 'no repository'}")


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


def build_spec(name: str, pipeline: Pipeline, meta: Meta) -> JobSpec:
    return JobSpec(
        pipeline=name,
        queue=pipeline.queue,
        command=fill_template(pipeline.command, meta) if pipeline.command else None,
        handler=pipeline.handler,
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
    )
