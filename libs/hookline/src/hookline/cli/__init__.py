"""The ``hookline`` command: every service, ``up``, and the operator tools.

Each area registers its subcommands from its own module; services are imported only
when their subcommand runs, so the library never depends on a service being installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from hookline.errors import ConfigError
from hookline.service import EXIT_CONFIG

# Modules under hookline.cli with a ``register(subparsers)`` function, in help order.
AREAS = ("services", "webhook", "config", "commands", "views")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="GitHub webhooks in, pipeline jobs out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"hookline.cli.{area}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
