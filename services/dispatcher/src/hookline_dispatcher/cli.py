"""``hookline dispatcher`` and ``hookline config check [FILE]``, registered through the
``hookline.cli`` entry point."""

from __future__ import annotations

import argparse
import os

from hookline.cli.plugins import Subcommands
from hookline.errors import ConfigError
from hookline.service import fail


def register(sub: Subcommands) -> None:
    dispatcher = sub.add_parser("dispatcher", help="run the dispatcher service")
    dispatcher.set_defaults(func=cmd_dispatcher)
    config = sub.add_parser("config", help="check hookline.toml")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_sub.add_parser(
        "check", help="validate routes and pipelines and print the resolved routes"
    )
    check.add_argument(
        "file", nargs="?", help="the file (default: HOOKLINE_CONFIG, else ./hookline.toml)"
    )
    check.set_defaults(func=cmd_check)


def cmd_dispatcher(_: argparse.Namespace) -> int:
    from hookline_dispatcher.__main__ import main

    return main()


def cmd_check(args: argparse.Namespace) -> int:
    from hookline_dispatcher.configfile import describe, load_config
    from hookline_dispatcher.settings import config_file

    path = args.file or config_file(os.environ.get("HOOKLINE_CONFIG") or None)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return fail(str(exc))
    source = path or "no hookline.toml: the built-in default"
    print(f"{source}: ok, {len(config.pipelines)} pipeline(s), {len(config.routes)} route(s)")
    for line in describe(config):
        print(line)
    return 0
