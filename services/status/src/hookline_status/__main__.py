"""``python -m hookline_status``: the job views, the HTTP API and system metrics."""

from __future__ import annotations

import sys

from hookline.service import run_service

from hookline_status.app import build
from hookline_status.settings import StatusSettings, load


def _listen(settings: StatusSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, "HOOKLINE_STATUS_PORT"


def main() -> int:
    return run_service("status", load, build, _listen)


if __name__ == "__main__":
    sys.exit(main())
