"""``hookline up``: the whole system on this machine (each service as its own process;
the services add their own ``hookline <service>`` commands, see :mod:`hookline.cli.plugins`)."""

from __future__ import annotations

import argparse
import os
import sys

from hookline.cli.common import HOME
from hookline.errors import ConfigError, HooklineError
from hookline.service import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument(
        "--concurrency", type=int, default=None, help="jobs each worker runs at once (default 1)"
    )
    up.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from hookline.supervisor import Supervisor

    try:
        return Supervisor(os.environ, args.workers, HOME, worker_concurrency=args.concurrency).run()
    except ConfigError as exc:
        return fail(str(exc))
    except HooklineError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return 1
