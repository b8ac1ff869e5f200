"""``python -m hookline_status [--rebuild]``: the job views, the HTTP API and system
metrics; with ``--rebuild``, replay every stream into fresh views and switch to them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from hookline.cli.common import header, unreachable
from hookline.errors import ConfigError
from hookline.keys import Keys
from hookline.redis_client import UNAVAILABLE, connect
from hookline.redis_target import HOME, RedisTarget, resolve
from hookline.service import fail, run_service

from hookline_status.app import build
from hookline_status.maintenance import RebuildBusy, rebuild
from hookline_status.settings import StatusSettings, load


def _listen(settings: StatusSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_STATUS_PORT"


async def _rebuild(settings: StatusSettings, target: RedisTarget) -> int:
    redis = connect(settings.redis_url, client_name="hookline-status-rebuild")
    try:
        report = await rebuild(redis, Keys(settings.prefix))
    except RebuildBusy as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return 1
    except UNAVAILABLE as exc:
        return unreachable(target, exc)
    finally:
        await redis.aclose()
    print(
        f"rebuilt generation {report.new_generation} (was {report.old_generation}) from "
        f"{report.entries} entries: {report.applied} view changes, "
        f"{report.undecodable} undecodable entries skipped, in {report.seconds:.2f}s"
    )
    return 0


def rebuild_main() -> int:
    """Rebuild the views of ``REDIS_URL``, else of the ``hookline up`` in this folder."""
    try:
        target = resolve(os.environ, HOME)
        settings = load(target.apply(os.environ))
    except ConfigError as exc:
        return fail(str(exc))
    print(header(target), flush=True)
    return asyncio.run(_rebuild(settings, target))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline status")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="replay every stream into fresh views, switch to them atomically, and exit",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.rebuild:
        return rebuild_main()
    return run_service("status", load, build, _listen)


if __name__ == "__main__":
    sys.exit(main())
