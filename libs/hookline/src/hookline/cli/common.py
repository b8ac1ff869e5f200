"""What several CLI commands share."""

from __future__ import annotations

from pathlib import Path

# Where `hookline up` keeps its state (embedded Redis data, generated secret, artifacts).
HOME = Path(".hookline")
