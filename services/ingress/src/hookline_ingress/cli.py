"""``hookline ingress``, registered through the ``hookline.cli`` entry point."""

from __future__ import annotations

import argparse

from hookline.cli.plugins import Subcommands


def register(sub: Subcommands) -> None:
    ingress = sub.add_parser("ingress", help="run the ingress service (POST /webhook)")
    ingress.set_defaults(func=cmd_ingress)


def cmd_ingress(_: argparse.Namespace) -> int:
    from hookline_ingress.__main__ import main

    return main()
