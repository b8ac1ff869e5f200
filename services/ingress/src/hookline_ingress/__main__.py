"""``python -m hookline_ingress``: serve ``POST /webhook``."""

from __future__ import annotations

import sys

from hookline.service import Service, run_service

from hookline_ingress.app import create_app
from hookline_ingress.settings import IngressSettings, load


def _listen(settings: IngressSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_INGRESS_PORT"


def _build(settings: IngressSettings) -> Service[IngressSettings]:
    return Service(create_app(settings))


def main() -> int:
    return run_service("ingress", load, _build, _listen)


if __name__ == "__main__":
    sys.exit(main())
