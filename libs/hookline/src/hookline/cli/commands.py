"""Operator commands: ``hookline requeue``, ``hookline cancel``, ``hookline empty failed``.

They only append a command to the ``commands`` stream and print the dispatcher's answer;
the exit status is 0 when it was carried out, 1 when refused or not answered in time.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from typing import TYPE_CHECKING

from hookline.cli.common import header, redis_target, settings_env, unreachable
from hookline.config import BaseSettings, load_settings
from hookline.errors import ConfigError
from hookline.events import FailedPurgeRequested, JobCancelRequested, JobRequeueRequested
from hookline.keys import Keys, check_name
from hookline.service import fail

if TYPE_CHECKING:
    from hookline.events import Command, CommandAnswer

MAX_JOB_ID = 200


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    requeue = sub.add_parser("requeue", help="run a failed job again (or every failed job)")
    requeue.add_argument("job_id", nargs="?", type=job_id, help="the job to run again")
    requeue.add_argument("--all", action="store_true", help="every failed job")
    requeue.add_argument("--queue", type=queue_name, help="with --all: only this queue")
    _add_timeout(requeue)
    requeue.set_defaults(func=cmd_requeue, parser=requeue)

    cancel = sub.add_parser("cancel", help="cancel a queued, deferred or running job")
    cancel.add_argument("job_id", type=job_id)
    _add_timeout(cancel)
    cancel.set_defaults(func=cmd_cancel)

    empty = sub.add_parser("empty", help="forget jobs")
    empty.add_argument("what", choices=["failed"], help="which jobs (only: failed)")
    empty.add_argument("--queue", type=queue_name, help="only this queue")
    _add_timeout(empty)
    empty.set_defaults(func=cmd_empty)


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        help="how long to wait for the dispatcher's answer (default 10s)",
    )


def job_id(value: str) -> str:
    if not value or len(value) > MAX_JOB_ID or any(ch.isspace() for ch in value):
        raise argparse.ArgumentTypeError(f"not a job id: {value!r}")
    return value


def queue_name(value: str) -> str:
    try:
        return check_name("queue name", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(value: str) -> float:
    from hookline.durations import parse_duration

    try:
        parsed = float(parse_duration(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < parsed <= 3600:
        raise argparse.ArgumentTypeError("must be between 1ms and 1h")
    return parsed


def requester() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def cmd_requeue(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if bool(args.job_id) == bool(args.all):
        parser.error("give either a JOB_ID or --all")
    if args.queue and not args.all:
        parser.error("--queue goes with --all")
    if args.all:
        command: Command = JobRequeueRequested(
            all_failed=True, queue=args.queue, requested_by=requester()
        )
    else:
        command = JobRequeueRequested(job_id=args.job_id, requested_by=requester())
    return send(command, args.timeout)


def cmd_cancel(args: argparse.Namespace) -> int:
    return send(JobCancelRequested(job_id=args.job_id, requested_by=requester()), args.timeout)


def cmd_empty(args: argparse.Namespace) -> int:
    return send(FailedPurgeRequested(queue=args.queue, requested_by=requester()), args.timeout)


def send(command: Command, timeout: float) -> int:
    """Append ``command``, print the answer; 0 if carried out, 1 otherwise."""
    # Imported here: argument errors should not wait for the Redis client to load.
    from hookline.commands import send_command
    from hookline.redis_client import UNAVAILABLE, connect

    target = redis_target()
    try:
        settings = load_settings(BaseSettings, settings_env(target))
    except ConfigError as exc:
        return fail(str(exc))
    keys = Keys(settings.prefix)

    async def go() -> CommandAnswer | None:
        redis = connect(settings.redis_url, client_name="hookline-cli")
        try:
            await redis.ping()
            print(header(target), flush=True)
            return await send_command(redis, keys, command, timeout=timeout)
        finally:
            await redis.aclose()

    try:
        answer = asyncio.run(go())
    except UNAVAILABLE as exc:
        return unreachable(target, exc)
    if answer is None:
        print(
            f"hookline: no answer within {timeout:g}s: is a dispatcher running? The command "
            f"({command.event_id}) stays in the commands stream and is carried out when one "
            "runs.",
            file=sys.stderr,
        )
        return 1
    print(answer.message)
    for job in answer.job_ids:
        print(f"  {job}")
    return 0 if answer.ok else 1
