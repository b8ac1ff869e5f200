"""The OpenAPI 3 description of the status API, served at ``GET /openapi.json``.

Tests run schemathesis against a live service with it, so it has to say exactly what
the handlers do.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
from hookline.records import WorkerView
from hookline.views import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    LIST_STATUSES,
    MAX_FILTER_LENGTH,
    MAX_LIMIT,
    STATUSES,
)

_STR = {"type": "string"}
_NSTR = {"type": "string", "nullable": True}


_REF = "#/components/schemas/{name}"
_NULL = {"type": "null"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


JOB = _obj(
    {
        "job_id": _STR,
        "status": {"type": "string", "enum": list(STATUSES)},
        "created_at": {**_NSTR, "format": "date-time"},
        "started_at": {**_NSTR, "format": "date-time"},
        "ended_at": {**_NSTR, "format": "date-time"},
        "result": {"nullable": True, "description": "what the pipeline returned (any JSON)"},
        "error": {
            **_obj(
                {
                    "type": _STR,
                    "message": _STR,
                    "traceback": _NSTR,
                    "retryable": {"type": "boolean"},
                },
                ["type", "message"],
            ),
            "nullable": True,
        },
        "meta": {"type": "object", "additionalProperties": True},
        "attempt": {"type": "integer", "minimum": 0},
        "queue": _NSTR,
        "pipeline": _NSTR,
        "repository": _NSTR,
        "worker": _NSTR,
        "not_before": {**_NSTR, "format": "date-time"},
        "reason": _NSTR,
        "delivery_id": _NSTR,
        "duration": {"type": "number", "nullable": True, "minimum": 0},
    }
)

EVENT = {
    **_obj(
        {
            "type": {
                "type": "string",
                "enum": [
                    "webhook.received",
                    "job.queued",
                    "job.started",
                    "job.finished",
                    "job.deferred",
                ],
            },
            "event_id": _STR,
            "occurred_at": {"type": "string", "format": "date-time"},
            "attempt": {"type": "integer", "minimum": 0},
            "queue": _STR,
            "pipeline": _STR,
            "worker": _STR,
            "outcome": {"type": "string", "enum": ["finished", "failed", "canceled", "skipped"]},
            "error": {"type": "object", "additionalProperties": True},
            "reason": _STR,
            "not_before": _STR,
            "duration": {"type": "number"},
            "event": _STR,
            "action": _STR,
        },
        ["type", "event_id", "occurred_at", "attempt"],
    ),
    "additionalProperties": True,
}


def from_structs(*types: type[msgspec.Struct]) -> dict[str, Any]:
    """Component schemas of Structs the API encodes, in OpenAPI 3.0's dialect. Every
    property is required: the encoder always writes every field."""
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    return {name: _openapi30(schema) for name, schema in components.items()}


def _openapi30(schema: Any) -> Any:
    """JSON Schema as msgspec writes it, with ``nullable`` for a member ``{"type": "null"}``."""
    if isinstance(schema, list):
        return [_openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi30(v) for k, v in schema.items() if k != "title"}
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
    members = out.get("anyOf")
    if members and _NULL in members:
        rest = [m for m in members if m != _NULL]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            return {**rest[0], **out, "nullable": True}
        return {**out, "anyOf": rest, "nullable": True}
    return out


_COUNT = {"type": "integer", "minimum": 0}
QUEUE = _obj(
    {
        "queue": _STR,
        "length": {**_COUNT, "description": "jobs waiting for a worker to take them"},
        "waiting": {**_COUNT, "description": "the same as length (kept for older clients)"},
        "pending": {
            **_COUNT,
            "description": "delivered to a worker, not yet acknowledged: running, or held "
            "by a worker that died until another claims it",
        },
        "stream_entries": {
            **_COUNT,
            "description": "entries the queue's stream retains, handled ones not yet "
            "trimmed too (not a count of jobs)",
        },
        "oldest_age_seconds": {"type": "number", "minimum": 0},
    }
)

HEALTH = {
    **_obj(
        {
            "status": {"type": "string", "enum": ["ok", "degraded", "unhealthy"]},
            "redis_connected": {"type": "boolean"},
            "queue_available": {"type": "boolean"},
            "queue_length": {
                **_COUNT,
                "description": "jobs waiting on the default queue for a worker",
            },
            "workers_count": {"type": "integer", "minimum": 0},
            "queues": {"type": "array", "items": _ref("Queue")},
            "services": {"type": "object", "additionalProperties": {"type": "object"}},
        }
    ),
}

COMMAND_ANSWER = _obj(
    {
        "command_id": _STR,
        "ok": {"type": "boolean"},
        "message": _STR,
        "job_ids": {"type": "array", "items": _STR},
    }
)
COMMAND_PENDING = _obj({"command_id": _STR, "status": {"type": "string", "enum": ["pending"]}})

_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}
_READ_ERRORS = {
    "400": _error("an unknown query parameter"),
    "401": _error("HOOKLINE_READ_TOKEN is set and no bearer token was given"),
    "403": _error("the bearer token is wrong"),
    "503": _error("Redis cannot be reached"),
}
_ADMIN_ERRORS = {
    "400": _error("an unknown or bad query parameter"),
    "401": _error("no bearer token"),
    "403": _error("the bearer token is not the admin token, or no admin token is configured"),
    "503": _error("Redis cannot be reached"),
}
_COMMAND_REPLIES = {
    "200": _json(_ref("CommandAnswer"), "the dispatcher carried the command out (or refused it)"),
    "202": _json(_ref("CommandPending"), "appended; the dispatcher has not answered yet"),
}


def _read(
    summary: str, ok: dict[str, Any], params: list[Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": params,
        "security": [{}, {"bearer": []}],
        "responses": {"200": ok, **_READ_ERRORS, **(extra or {})},
    }


def _admin(summary: str, params: list[Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": params,
        "security": [{"bearer": []}],
        "responses": {**_COMMAND_REPLIES, **_ADMIN_ERRORS, **(extra or {})},
    }


def _filter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"only jobs whose {name} is exactly this",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
    }


@cache
def document() -> dict[str, Any]:
    not_found = {"404": _error("no such job (or its view expired)")}
    list_params = [
        {
            "name": "status",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": list(LIST_STATUSES), "default": "all"},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        _filter("queue"),
        _filter("pipeline"),
        _filter("repository"),
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "next_cursor of the previous page: the page starts after it",
            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        },
    ]
    list_errors = {
        **_READ_ERRORS,
        "400": _error("a bad parameter (named in detail and in X-Invalid-Parameter)"),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hookline status API",
            "version": "1",
            "description": "Job views projected from hookline's event streams, workers, "
            "health, and operator commands.",
        },
        "paths": {
            "/jobs": {
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": list_params,
                    "security": [{}, {"bearer": []}],
                    "responses": {
                        "200": _json(
                            _obj(
                                {
                                    "count": {"type": "integer", "minimum": 0},
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "next_cursor": _NSTR,
                                }
                            ),
                            "one page of jobs",
                        ),
                        **list_errors,
                    },
                }
            },
            "/jobs/{job_id}": {
                "get": _read("One job's view", _json(_ref("Job"), "the job"), [_JOB_ID], not_found)
            },
            "/jobs/{job_id}/events": {
                "get": _read(
                    "Every event of one job, oldest first",
                    _json(
                        _obj(
                            {
                                "job_id": _STR,
                                "count": {"type": "integer", "minimum": 0},
                                "events": {"type": "array", "items": _ref("JobEvent")},
                            }
                        ),
                        "the job's history",
                    ),
                    [_JOB_ID],
                    not_found,
                )
            },
            "/jobs/{job_id}/requeue": {"post": _admin("Run a job again", [_JOB_ID], not_found)},
            "/jobs/{job_id}/cancel": {
                "post": _admin("Cancel a queued, deferred or running job", [_JOB_ID], not_found)
            },
            "/jobs/requeue-failed": {
                "post": _admin(
                    "Requeue every failed job",
                    [
                        {
                            "name": "queue",
                            "in": "query",
                            "required": False,
                            "description": "only failed jobs of this queue",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                        }
                    ],
                )
            },
            "/workers": {
                "get": _read(
                    "Registered workers",
                    _json(
                        _obj(
                            {
                                "count": {"type": "integer", "minimum": 0},
                                "workers": {"type": "array", "items": _ref("WorkerView")},
                            }
                        ),
                        "every worker with its state",
                    ),
                    [],
                )
            },
            "/health": {
                "get": {
                    "summary": "Health, with per-queue and per-service detail",
                    "responses": {
                        "200": _json(_ref("Health"), "Redis reachable"),
                        "503": _json(_ref("Health"), "Redis cannot be reached"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of the whole system",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": _STR}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Job": JOB,
                "JobEvent": EVENT,
                **from_structs(WorkerView),
                "Queue": QUEUE,
                "Health": HEALTH,
                "CommandAnswer": COMMAND_ANSWER,
                "CommandPending": COMMAND_PENDING,
                "Error": _obj({"error": _STR, "detail": _STR}),
            },
        },
    }


def allowed_methods(path: str) -> list[str]:
    """The methods the document lists for ``path`` (literal paths win over templates,
    as in the router); HEAD goes with GET."""
    literal: list[dict[str, Any]] = []
    templated: list[dict[str, Any]] = []
    for template, operations in document()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            (templated if "{" in template else literal).append(operations)
    for found in (literal, templated):
        if found:
            methods = {m.upper() for m in found[0]}
            if "GET" in methods:
                methods.add("HEAD")
            return sorted(methods)
    return []
