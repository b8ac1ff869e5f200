"""Operator views: ``hookline info``, ``hookline jobs``, ``hookline job ID``.

They read the status projection straight from Redis through the same functions the
status HTTP API serves (:mod:`hookline_status.reads`), so both always agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import msgspec
from hookline.cli.common import header, redis_target, settings_env, unreachable
from hookline.cli.plugins import Subcommands
from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError
from hookline.keys import Keys
from hookline.redis_client import UNAVAILABLE, Redis, connect
from hookline.service import fail

from hookline_status.documents import LIST_STATUSES
from hookline_status.overview import system_info
from hookline_status.query import DEFAULT_LIMIT, DIMENSIONS, MAX_LIMIT, QueryError, parse_job_query
from hookline_status.reads import get_job, job_history, list_job_documents

_decoder = msgspec.json.Decoder()

CLEAR = "\x1b[H\x1b[2J"


class ViewSettings(BaseSettings, frozen=True, kw_only=True):
    worker_ttl: Duration = Duration(30)

    ENV: ClassVar[dict[str, str]] = {"worker_ttl": "HOOKLINE_WORKER_TTL"}


def register(sub: Subcommands) -> None:
    info = sub.add_parser("info", help="queues, workers and jobs by status (like rq info)")
    info.add_argument(
        "--interval",
        type=_positive_float,
        help="refresh every N seconds, in place, until Ctrl-C",
    )
    _json_flag(info)
    info.set_defaults(func=cmd_info)

    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", default="all", choices=LIST_STATUSES)
    jobs.add_argument(
        "--limit", type=_limit, default=DEFAULT_LIMIT, help=f"at most N jobs (1-{MAX_LIMIT})"
    )
    for name in DIMENSIONS:
        jobs.add_argument(f"--{name}", help=f"only jobs of this {name}")
    jobs.add_argument("--cursor", help="continue after a previous page (its next_cursor)")
    _json_flag(jobs)
    jobs.set_defaults(func=cmd_jobs)

    job = sub.add_parser("job", help="one job's view")
    job.add_argument("job_id", metavar="ID")
    job.add_argument("--events", action="store_true", help="also show every event of the job")
    _json_flag(job)
    job.set_defaults(func=cmd_job)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400, got {text!r}")
    return value


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_LIMIT}, got {text!r}"
        )
    return int(text)


def _run(
    action: Callable[[Redis, Keys, ViewSettings], Awaitable[int]], *, show_header: bool
) -> int:
    """Run ``action`` against the chosen Redis; ``show_header`` prints which one first."""
    target = redis_target()
    try:
        settings = load_settings(ViewSettings, settings_env(target))
    except ConfigError as exc:
        return fail(str(exc))

    async def main() -> int:
        redis = connect(settings.redis_url, client_name="hookline-cli", socket_timeout=10)
        try:
            await redis.ping()
            if show_header:
                print(header(target), flush=True)
            return await action(redis, Keys(settings.prefix), settings)
        except UNAVAILABLE as exc:
            return unreachable(target, exc)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


# -- info --------------------------------------------------------------------------


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


SHOWN_JOBS = 3


def _current_jobs(worker: Mapping[str, Any]) -> str:
    """The jobs a worker runs: ids, with the attempt when it is a retry."""
    jobs = worker["current_jobs"]
    if not jobs:
        return f"{worker['busy']} running" if worker["busy"] else "-"
    shown = [
        job["job_id"] + (f" (attempt {job['attempt']})" if job["attempt"] > 1 else "")
        for job in jobs[:SHOWN_JOBS]
    ]
    more = f" +{len(jobs) - SHOWN_JOBS} more" if len(jobs) > SHOWN_JOBS else ""
    return ", ".join(shown) + more


def format_info(info: Mapping[str, Any]) -> str:
    lines = ["queues"]
    lines += _table(
        [["QUEUE", "LENGTH", "PENDING", "OLDEST", "RETAINED"]]
        + [
            [
                q["queue"],
                str(q["length"]),
                str(q["pending"]),
                _age(q["oldest_age_seconds"]),
                str(q["stream_entries"]),
            ]
            for q in info["queues"]
        ]
    )
    lines.append(
        "  length: jobs waiting for a worker; pending: taken by a worker, not done yet; "
        "retained: entries the stream keeps"
    )
    workers = info["workers"]
    live = [w for w in workers if w["state"] != "dead"]
    busy = sum(1 for w in live if w["state"] == "busy")
    lines += ["", f"workers: {len(live)} live, {busy} busy, {len(workers) - len(live)} dead"]
    lines += _table(
        [["NAME", "HOST", "STATE", "QUEUES", "CURRENT JOBS", "DONE", "HEARTBEAT"]]
        + [
            [
                w["name"],
                w["host"] or "-",
                w["state"],
                ",".join(w["queues"]) or "-",
                _current_jobs(w),
                str(w["jobs_done"]),
                f"{_age(w['heartbeat_age_seconds'])} ago",
            ]
            for w in workers
        ]
    )
    lines += ["", "jobs"]
    lines += _table([[status, str(count)] for status, count in info["jobs"].items()])
    lines += ["", time.strftime("updated %Y-%m-%d %H:%M:%S %Z")]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    # In the text, so that a refresh in place keeps it on screen.
    head = header(redis_target())

    async def action(redis: Redis, keys: Keys, settings: ViewSettings) -> int:
        while True:
            info = msgspec.to_builtins(await system_info(redis, keys, settings.worker_ttl))
            if args.json:
                print(json.dumps(info), flush=True)
            else:
                text = f"{head}\n\n{format_info(info)}"
                print((CLEAR + text) if args.interval and sys.stdout.isatty() else text, flush=True)
            if not args.interval:
                return 0
            await asyncio.sleep(args.interval)

    try:
        return _run(action, show_header=False)
    except KeyboardInterrupt:
        return 0


# -- jobs and job --------------------------------------------------------------------


def _job_row(job: Mapping[str, Any]) -> list[str]:
    return [
        job["job_id"] or "-",
        job["status"] or "-",
        str(job["attempt"]),
        job["queue"] or "-",
        job["pipeline"] or "-",
        job["repository"] or "-",
        job["created_at"] or "-",
    ]


def cmd_jobs(args: argparse.Namespace) -> int:
    raw = {"status": args.status, "limit": str(args.limit)}
    for name in (*DIMENSIONS, "cursor"):
        if getattr(args, name) is not None:
            raw[name] = getattr(args, name)
    try:
        query = parse_job_query(raw)
    except QueryError as exc:
        return fail(f"--{exc.parameter}: {exc}")

    async def action(redis: Redis, keys: Keys, _: ViewSettings) -> int:
        page = await list_job_documents(redis, keys, query)
        jobs = [_decoder.decode(document) for document in page.documents]
        if args.json:
            _dump({"count": len(jobs), "jobs": jobs, "next_cursor": page.next_cursor})
            return 0
        header = ["JOB", "STATUS", "ATTEMPT", "QUEUE", "PIPELINE", "REPOSITORY", "CREATED"]
        print("\n".join(_table([header] + [_job_row(j) for j in jobs], indent="")))
        print(f"{len(jobs)} job(s)")
        if page.next_cursor:
            print(f"more: hookline jobs --cursor {page.next_cursor}")
        return 0

    return _run(action, show_header=not args.json)


def format_job(job: Mapping[str, Any], events: list[dict[str, Any]] | None) -> str:
    width = max(len(name) for name in job) if job else 0
    lines = [
        f"{name:<{width}} {json.dumps(value) if isinstance(value, dict | list) else value}"
        for name, value in job.items()
        if value not in (None, {}, "") and name != "meta"
    ]
    if job.get("meta"):
        lines.append(f"{'meta':<12} {json.dumps(job['meta'])}")
    if events is not None:
        lines += ["", "events"]
        for event in events:
            extras = {
                k: v
                for k, v in event.items()
                if k not in ("type", "event_id", "occurred_at", "attempt")
            }
            detail = " ".join(
                f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in extras.items()
            )
            head = f"  {event['occurred_at']}  #{event['attempt']}  {event['type']:<16}"
            lines.append(f"{head} {detail}".rstrip())
    return "\n".join(lines)


def cmd_job(args: argparse.Namespace) -> int:
    async def action(redis: Redis, keys: Keys, _: ViewSettings) -> int:
        job = await get_job(redis, keys, args.job_id)
        if job is None:
            print(f"hookline: error: no job with id {args.job_id!r}", file=sys.stderr)
            return 1
        history = await job_history(redis, keys, args.job_id) if args.events else None
        events = None if history is None else msgspec.to_builtins(history)
        if args.json:
            _dump({**job, "events": events} if args.events else job)
        else:
            print(format_job(job, events))
        return 0

    return _run(action, show_header=not args.json)
