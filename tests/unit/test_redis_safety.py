"""The Redis safety rule: what persistence and eviction settings are safe for jobs."""

from __future__ import annotations

import pytest
from hookline.redis_safety import Observed, assess

SAFE = Observed(aof_enabled=True, aof_write_ok=True, save="", policy="noeviction")


@pytest.mark.parametrize(
    ("observed", "persistence", "problem"),
    [
        (SAFE, "aof", None),
        (Observed(True, True, None, "noeviction"), "aof", None),  # CONFIG refused: INFO is enough
        (Observed(False, True, "3600 1", "noeviction"), "rdb", None),
        (Observed(False, True, "", "noeviction"), "none", "persistence is off"),
        (Observed(False, True, None, "noeviction"), "unknown", "cannot verify persistence"),
        (Observed(None, None, None, "noeviction"), "unknown", "cannot verify persistence"),
        (Observed(True, True, "", "allkeys-lru"), "aof", "maxmemory-policy is allkeys-lru"),
        (Observed(True, True, "", "volatile-ttl"), "aof", "maxmemory-policy is volatile-ttl"),
        (Observed(True, True, "", None), "aof", "cannot verify the eviction policy"),
        (Observed(True, False, "", "noeviction"), "aof", "failing AOF writes"),
    ],
)
def test_assess(observed: Observed, persistence: str, problem: str | None) -> None:
    verdict = assess(observed)
    assert verdict.persistence == persistence
    assert verdict.safe is (problem is None)
    if problem is not None:
        assert any(problem in p for p in verdict.problems), verdict.problems


def test_rdb_only_is_safe_with_a_warning() -> None:
    verdict = assess(Observed(False, True, "900 1", "noeviction"))
    assert verdict.safe
    assert "appendonly yes is recommended" in verdict.warnings[0]


def test_every_problem_is_reported_at_once() -> None:
    verdict = assess(Observed(False, True, "", "allkeys-lru"))
    assert len(verdict.problems) == 2
