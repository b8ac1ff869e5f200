"""How services add subcommands to ``hookline``: each names a ``register(subcommands)``
function in the ``hookline.cli`` entry-point group of its pyproject, and the command
discovers them (as pytest and Flask find plugins), so the library imports no service."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from typing import TypeAlias

GROUP = "hookline.cli"

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register_plugins(sub: Subcommands) -> None:
    """Every installed service's subcommands, in name order; one that fails to load is
    named on stderr and left out, so the others still work."""
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        try:
            entry.load()(sub)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            print(
                f"hookline: warning: cannot load the {entry.name!r} commands "
                f"({entry.value}): {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


def service_modules() -> dict[str, str]:
    """The installed services: entry-point name (``worker``) -> top-level module that
    ``python -m`` runs (``hookline_worker``), as their plugins declare them."""
    return {e.name: e.module.split(".")[0] for e in metadata.entry_points(group=GROUP)}
