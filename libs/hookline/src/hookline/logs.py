"""structlog set-up: JSON lines in production, readable console on a TTY.

Every line carries ``service``; consumers bind ``delivery_id`` and ``job_id`` with
:func:`structlog.contextvars.bound_contextvars` while they handle an event.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# msgspec renders a log line several times faster than the stdlib json module; anything
# it does not know (exceptions, paths) is written as its str().
_encoder = msgspec.json.Encoder(enc_hook=str)


def _dumps(obj: Any, **_: Any) -> str:
    return _encoder.encode(obj).decode()


def configure_logging(service: str, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for one process; safe to call more than once."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.lower()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(**bound: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(**bound)
    return logger
