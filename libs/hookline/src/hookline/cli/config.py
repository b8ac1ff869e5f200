"""``hookline config check [FILE]``: validate ``hookline.toml`` without starting anything."""

from __future__ import annotations

import argparse
import os

from hookline.errors import ConfigError
from hookline.service import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="check hookline.toml")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_sub.add_parser(
        "check", help="validate routes and pipelines and print the resolved routes"
    )
    check.add_argument(
        "file", nargs="?", help="the file (default: HOOKLINE_CONFIG, else ./hookline.toml)"
    )
    check.set_defaults(func=cmd_check)


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
