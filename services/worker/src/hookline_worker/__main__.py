"""``python -m hookline_worker``: run pipeline jobs (flags as ``hookline worker``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hookline.service import run_service

from hookline_worker.app import build
from hookline_worker.cli import add_worker_arguments
from hookline_worker.settings import WorkerSettings, load


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    queues = None
    if args.queues is not None:  # "--queues ''" is an error, not the default queue
        queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    return {
        "name": args.name,
        "queues": queues,
        "concurrency": args.concurrency,
        "burst": args.burst,
        "port": args.port,
        "shutdown_timeout": args.shutdown_timeout,
        "worker_ttl": args.worker_ttl,
        "lease_timeout": args.lease_timeout,
        "batch": args.batch,
    }


def _listen(settings: WorkerSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_WORKER_PORT"


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    flags = flags_of(args)
    environ = os.environ if env is None else env

    def load_with_flags(environ: Mapping[str, str]) -> WorkerSettings:
        return load(environ, **flags)

    # Only a port someone asked for must be that port: beside `hookline up` (whose
    # workers hold 9103 and up) a plain `hookline worker` takes a free one instead.
    chosen = args.port is not None or bool(environ.get("HOOKLINE_WORKER_PORT"))
    return run_service(
        "worker", load_with_flags, build, _listen, env=environ, any_port_if_taken=not chosen
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline-worker", description=__doc__)
    add_worker_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
