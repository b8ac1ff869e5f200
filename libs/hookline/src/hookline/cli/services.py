"""Running services: ``hookline up``, ``hookline <service>``, ``hookline worker``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from hookline.cli.common import HOME
from hookline.errors import ConfigError, HooklineError
from hookline.service import fail

SERVICES = ("ingress", "dispatcher", "status")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument(
        "--concurrency", type=int, default=None, help="jobs each worker runs at once (default 1)"
    )
    up.set_defaults(func=cmd_up)
    for name in SERVICES:
        service = sub.add_parser(name, help=f"run the {name} service")
        service.set_defaults(func=lambda _a, n=name: _run_service(n))
    sub.choices["status"].add_argument(
        "--rebuild",
        action="store_true",
        help="replay every stream into fresh job views, switch to them atomically, and exit",
    )
    sub.choices["status"].set_defaults(func=cmd_status)
    worker = sub.add_parser("worker", help="run a worker")
    add_worker_arguments(worker)
    worker.set_defaults(func=cmd_worker)


def _run_service(name: str) -> int:
    module = importlib.import_module(f"hookline_{name}.__main__")
    return int(module.main())


def cmd_status(args: argparse.Namespace) -> int:
    from hookline_status.__main__ import main

    return main(["--rebuild"] if args.rebuild else [])


def cmd_up(args: argparse.Namespace) -> int:
    from hookline.supervisor import Supervisor

    try:
        return Supervisor(os.environ, args.workers, HOME, worker_concurrency=args.concurrency).run()
    except ConfigError as exc:
        return fail(str(exc))
    except HooklineError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return 1


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="worker name (default: host-pid)")
    parser.add_argument("--queues", help="comma-separated queues, highest priority first")
    parser.add_argument("--concurrency", type=int, help="jobs run at once (default 1)")
    parser.add_argument(
        "--burst", action="store_true", default=None, help="exit once every listed queue is empty"
    )
    parser.add_argument("--port", type=int, help="port of /health and /metrics (0: none)")
    parser.add_argument("--shutdown-timeout", help="how long SIGTERM waits for running jobs")
    parser.add_argument(
        "--worker-ttl", help="how long a silent worker still counts as alive (default 30s)"
    )
    parser.add_argument(
        "--lease-timeout", help="idle time after which another worker takes a job (default 30s)"
    )
    parser.add_argument("--batch", type=int, help="entries read per XREADGROUP (default 100)")


def cmd_worker(args: argparse.Namespace) -> int:
    from hookline_worker.__main__ import run

    return run(args)
