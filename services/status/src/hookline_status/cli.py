"""``hookline status [--rebuild]`` and the operator views (``info``, ``jobs``, ``job``),
registered through the ``hookline.cli`` entry point."""

from __future__ import annotations

import argparse

from hookline.cli.plugins import Subcommands

from hookline_status import cli_views


def register(sub: Subcommands) -> None:
    status = sub.add_parser("status", help="run the status service (job views, API, metrics)")
    status.add_argument(
        "--rebuild",
        action="store_true",
        help="replay every stream into fresh job views, switch to them atomically, and exit",
    )
    status.set_defaults(func=cmd_status)
    cli_views.register(sub)


def cmd_status(args: argparse.Namespace) -> int:
    from hookline_status.__main__ import main

    return main(["--rebuild"] if args.rebuild else [])
