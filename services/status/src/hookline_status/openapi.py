"""The OpenAPI 3 description of the status API, served at ``GET /openapi.json``.

Tests run schemathesis against a live service with it, so it has to say exactly what
the handlers do.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
from msgspec import inspect as mi

from hookline_status.documents import DOCUMENTS, LIST_STATUSES
from hookline_status.query import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    DIMENSIONS,
    MAX_FILTER_LENGTH,
    MAX_LIMIT,
)

_STR = {"type": "string"}
_REF = "#/components/schemas/{name}"
_NULL = {"type": "null"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def from_structs(*types: Any) -> dict[str, Any]:
    """Component schemas of the Structs the API encodes, in OpenAPI 3.0's dialect. Every
    property is required (the encoder writes every field) unless the Struct leaves out
    fields at their default (``omit_defaults``); then msgspec's own list stands."""
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    partial = {s.__name__ for s in _structs(types) if s.__struct_config__.omit_defaults}
    out = {}
    for name, schema in components.items():
        converted = _openapi30(schema)
        if name not in partial and "properties" in converted:
            converted["required"] = list(converted["properties"])
        out[name] = converted
    return out


def _structs(types: tuple[Any, ...]) -> set[type[msgspec.Struct]]:
    """Every Struct type reachable from ``types``."""
    found: set[type[msgspec.Struct]] = set()

    def walk(info: Any) -> None:
        if isinstance(info, mi.StructType):
            if info.cls in found:
                return
            found.add(info.cls)
            for field in info.fields:
                walk(field.type)
            return
        for name in ("types", "item_type", "key_type", "value_type", "item_types"):
            inner = getattr(info, name, None)
            for member in inner if isinstance(inner, tuple) else (inner,):
                if member is not None:
                    walk(member)

    for info in mi.multi_type_info(types):
        walk(info)
    return found


def _openapi30(schema: Any) -> Any:
    """JSON Schema as msgspec writes it, with ``nullable`` for a member ``{"type": "null"}``."""
    if isinstance(schema, list):
        return [_openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    members = schema.get("anyOf")
    if members and _NULL in members:
        rest = [_openapi30(m) for m in members if m != _NULL]
        out = {k: _openapi30(v) for k, v in schema.items() if k not in ("title", "anyOf")}
        if len(rest) == 1:
            only = rest[0]
            # 3.0 ignores a $ref's siblings: a nullable reference goes through allOf
            return {**({"allOf": [only]} if "$ref" in only else only), **out, "nullable": True}
        return {**out, "anyOf": rest, "nullable": True}
    return {k: _openapi30(v) for k, v in schema.items() if k != "title"}


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
    "200": _json(_ref("CommandDone"), "the dispatcher carried the command out (or refused it)"),
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
        *(_filter(dimension) for dimension in DIMENSIONS),
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
                        "200": _json(_ref("JobPage"), "one page of jobs"),
                        **list_errors,
                    },
                }
            },
            "/jobs/{job_id}": {
                "get": _read(
                    "One job's view", _json(_ref("JobView"), "the job"), [_JOB_ID], not_found
                )
            },
            "/jobs/{job_id}/events": {
                "get": _read(
                    "Every event of one job, oldest first",
                    _json(_ref("JobHistory"), "the job's history"),
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
                    _json(_ref("WorkerList"), "every worker with its state"),
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
            "schemas": from_structs(*DOCUMENTS),
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
