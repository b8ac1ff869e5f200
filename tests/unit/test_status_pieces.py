"""Pure pieces of the status service: query parsing, cursors, trim floors, settings."""

from __future__ import annotations

import pytest
from hookline.errors import ConfigError
from hookline_status.maintenance import trim_floor
from hookline_status.openapi import allowed_methods
from hookline_status.query import Cursor, JobQuery, QueryError, parse_job_query
from hookline_status.settings import load


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, JobQuery()),
        ({"status": "failed", "limit": "7"}, JobQuery(status="failed", limit=7)),
        (
            {"queue": "video", "repository": "o/r"},
            JobQuery(filters=(("queue", "video"), ("repository", "o/r"))),
        ),
        ({"cursor": "123:job-1"}, JobQuery(cursor=Cursor(123, "job-1"))),
        ({"cursor": "123:a:b"}, JobQuery(cursor=Cursor(123, "a:b"))),
    ],
)
def test_good_queries(query: dict[str, str], expected: JobQuery) -> None:
    assert parse_job_query(query) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "٣"}, "limit"),
        ({"limit": "1e2"}, "limit"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "x:1"}, "cursor"),
        ({"cursor": "12"}, "cursor"),
        ({"cursor": "1:"}, "cursor"),
        ({"pipeline": ""}, "pipeline"),
        ({"queue": "q" * 201}, "queue"),
        ({"sort": "asc"}, "sort"),
    ],
)
def test_bad_queries_name_the_parameter(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_job_query(query)
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value)


def test_a_cursor_round_trips() -> None:
    cursor = Cursor(1795953600000, "job:with:colons")
    assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize(
    ("cutoff", "groups", "floor"),
    [
        ((100, 0), [], (100, 0)),
        ((100, 0), [((200, 0), None)], (100, 0)),
        ((100, 0), [((50, 3), None)], (50, 4)),
        ((100, 0), [((200, 0), (40, 1))], (40, 1)),
        ((100, 0), [((200, 0), None), ((60, 0), (55, 0))], (55, 0)),
        ((100, 0), [((0, 0), None)], (0, 1)),
    ],
)
def test_trim_floor_never_passes_an_unread_or_unacknowledged_entry(
    cutoff: tuple[int, int],
    groups: list[tuple[tuple[int, int], tuple[int, int] | None]],
    floor: tuple[int, int],
) -> None:
    assert trim_floor(cutoff, groups) == floor


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/jobs", ["GET", "HEAD"]),
        ("/jobs/requeue-failed", ["POST"]),
        ("/jobs/abc", ["GET", "HEAD"]),
        ("/jobs/abc/cancel", ["POST"]),
        ("/nowhere", []),
    ],
)
def test_allowed_methods_follow_the_document(path: str, methods: list[str]) -> None:
    assert allowed_methods(path) == methods


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HOOKLINE_ADMIN_TOKEN": "short"}, "HOOKLINE_ADMIN_TOKEN"),
        ({"HOOKLINE_ADMIN_TOKEN": "has a space in it!!"}, "HOOKLINE_ADMIN_TOKEN"),
        ({"HOOKLINE_READ_TOKEN": "tiny"}, "HOOKLINE_READ_TOKEN"),
        ({"HOOKLINE_COMMAND_TIMEOUT": "0"}, "HOOKLINE_COMMAND_TIMEOUT"),
        ({"HOOKLINE_COMMAND_TIMEOUT": "2m"}, "HOOKLINE_COMMAND_TIMEOUT"),
        ({"HOOKLINE_COMMAND_TIMEOUT": "soon"}, "HOOKLINE_COMMAND_TIMEOUT"),
        ({"HOOKLINE_RETENTION": "10s"}, "HOOKLINE_RETENTION"),
        ({"HOOKLINE_RETENTION": "forever"}, "HOOKLINE_RETENTION"),
        ({"HOOKLINE_STATUS_TRIM_EVERY": "0"}, "HOOKLINE_STATUS_TRIM_EVERY"),
        ({"HOOKLINE_STATUS_SWEEP_EVERY": "0s"}, "HOOKLINE_STATUS_SWEEP_EVERY"),
        ({"HOOKLINE_STATUS_METRICS_LEASE_TTL": "1ms"}, "HOOKLINE_STATUS_METRICS_LEASE_TTL"),
        ({"HOOKLINE_STATUS_METRICS_LEASE_RENEW": "0"}, "HOOKLINE_STATUS_METRICS_LEASE_RENEW"),
        (
            {
                "HOOKLINE_STATUS_METRICS_LEASE_TTL": "2s",
                "HOOKLINE_STATUS_METRICS_LEASE_RENEW": "1500ms",
            },
            "HOOKLINE_STATUS_METRICS_LEASE_RENEW",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert variable in str(caught.value)


def test_settings_defaults() -> None:
    settings = load({})
    assert settings.retention == 7 * 86400.0
    assert settings.admin_token == ""
    assert settings.command_timeout == 2.0
    assert (settings.metrics_lease_ttl, settings.metrics_lease_renew) == (5.0, 1.0)
