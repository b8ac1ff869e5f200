"""Keeping a process's secrets to itself once its settings are loaded: out of the
environment its children inherit, and out of reach of ``/proc/<pid>/environ``,
``mem`` and ``fd`` for other processes of the same user (``PR_SET_DUMPABLE`` 0)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

from hookline.config import FILE_SUFFIX, SECRET_VARIABLES

PR_SET_DUMPABLE = 4


def forget_secrets(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every secret variable (and its ``_FILE`` twin) from ``environ``; the
    names removed. On ``os.environ`` this unsets them too, so no child inherits them."""
    removed = []
    for var in SECRET_VARIABLES:
        for name in (var, var + FILE_SUFFIX):
            if environ.pop(name, None) is not None:
                removed.append(name)
    return removed


def make_undumpable() -> bool:
    """Forbid core dumps and ptrace-style access (``/proc/<pid>/environ``, ``mem``,
    ``fd``) to this process for anyone without CAP_SYS_PTRACE, including its own
    children. Children reset it when they exec. False where there is no prctl."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def keep_secrets() -> None:
    """What a service does right after loading its settings."""
    make_undumpable()
    forget_secrets(os.environ)
