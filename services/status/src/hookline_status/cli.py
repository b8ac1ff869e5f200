"""``hookline status [--rebuild]``, registered through the ``hookline.cli`` entry point."""

from __future__ import annotations

import argparse

from hookline.cli.plugins import Subcommands


def register(sub: Subcommands) -> None:
    status = sub.add_parser("status", help="run the status service (job views, API, metrics)")
    status.add_argument(
        "--rebuild",
        action="store_true",
        help="replay every stream into fresh job views, switch to them atomically, and exit",
    )
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from hookline_status.__main__ import main

    return main(["--rebuild"] if args.rebuild else [])
