"""The ``hookline`` command: ``up``, the operator tools, and whatever subcommands the
installed services register (:mod:`hookline.cli.plugins`); the library imports none."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from hookline.cli.plugins import register_plugins
from hookline.errors import ConfigError
from hookline.service import EXIT_CONFIG

# Modules under hookline.cli with a ``register(subparsers)`` function, in help order.
AREAS = ("up", "webhook", "commands")


def versions() -> Iterator[str]:
    """One line per installed hookline package (the library and every service)."""
    names = {
        name
        for dist in metadata.distributions()
        if (name := (dist.metadata["Name"] or "").lower().replace("_", "-")) == "hookline"
        or name.startswith("hookline-")
    }
    for name in sorted(names, key=lambda n: (n != "hookline", n)):
        yield f"{name} {metadata.version(name)}"


class _Versions(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print("\n".join(versions()))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="GitHub webhooks in, pipeline jobs out."
    )
    parser.add_argument(
        "--version",
        action=_Versions,
        nargs=0,
        help="print the version of every installed hookline package and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"hookline.cli.{area}").register(sub)
    register_plugins(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``hookline jobs | head``): quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ConfigError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
