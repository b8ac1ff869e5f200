"""``hookline worker``: registered with the ``hookline`` command through the
``hookline.cli`` entry point; the worker itself is imported only when it runs."""

from __future__ import annotations

import argparse

from hookline.cli.plugins import Subcommands


def register(sub: Subcommands) -> None:
    worker = sub.add_parser("worker", help="run a worker")
    add_worker_arguments(worker)
    worker.set_defaults(func=cmd_worker)


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
