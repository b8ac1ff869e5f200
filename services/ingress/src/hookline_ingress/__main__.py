"""``python -m hookline_ingress``: serve ``POST /webhook``."""

from __future__ import annotations

import sys

from aiohttp import web
from hookline.service import Service, run_service

from hookline_ingress.app import create_app
from hookline_ingress.server import IngressRunner
from hookline_ingress.settings import IngressSettings, load


def _listen(settings: IngressSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_INGRESS_PORT"


def _build(settings: IngressSettings) -> Service[IngressSettings]:
    def runner(app: web.Application) -> web.AppRunner:
        return IngressRunner(
            app, max_connections=settings.max_connections, access_log=None, handle_signals=False
        )

    return Service(create_app(settings), runner=runner)


def main() -> int:
    return run_service("ingress", load, _build, _listen)


if __name__ == "__main__":
    sys.exit(main())
