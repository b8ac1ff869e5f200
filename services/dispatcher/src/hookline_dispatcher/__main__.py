"""``python -m hookline_dispatcher``: route webhooks into jobs."""

from __future__ import annotations

import sys

from hookline.service import run_service

from hookline_dispatcher.app import build
from hookline_dispatcher.settings import DispatcherSettings, load


def _listen(settings: DispatcherSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_DISPATCHER_PORT"


def main() -> int:
    return run_service("dispatcher", load, build, _listen)


if __name__ == "__main__":
    sys.exit(main())
