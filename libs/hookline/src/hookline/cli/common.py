"""What several CLI commands share: ``.hookline/``, and which Redis they read."""

from __future__ import annotations

import os
import sys

from hookline.redact import redact_text
from hookline.redis_target import HOME, RedisTarget, resolve

__all__ = ["HOME", "header", "redis_target", "settings_env", "unreachable"]


def redis_target() -> RedisTarget:
    """``REDIS_URL``, else the Redis of the ``hookline up`` running in this folder."""
    return resolve(os.environ, HOME)


def settings_env(target: RedisTarget) -> dict[str, str]:
    """The environment settings are loaded from, with the chosen Redis in it."""
    return target.apply(os.environ)


def header(target: RedisTarget) -> str:
    return f"redis {target}"


def unreachable(target: RedisTarget, exc: BaseException) -> int:
    """One line naming the Redis (password masked) and the reason; exit status 1. A
    closed stdout (``| head``) is not Redis's fault: it goes on to :func:`main`."""
    if isinstance(exc, BrokenPipeError):
        raise exc
    reason = redact_text(str(exc), target.url)
    print(f"hookline: error: cannot reach Redis at {target}: {reason}", file=sys.stderr)
    return 1
