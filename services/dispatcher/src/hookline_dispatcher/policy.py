"""Retry policy: whether a failed attempt runs again, and after how long. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hookline.backoff import full_jitter
from hookline.events import Backoff, JobError, JobSpec


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def backoff_delay(backoff: Backoff, retry: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``retry`` (from 1): full jitter, or fixed."""
    if backoff.kind == "fixed":
        return backoff.base
    return full_jitter(retry, backoff.base, backoff.cap, rand)


def decide_retry(
    spec: JobSpec,
    attempt: int,
    first_attempt: int,
    error: JobError | None,
    *,
    canceling: bool = False,
    rand: Callable[[], float] = random.random,
) -> Retry | GiveUp:
    """What follows failed attempt ``attempt``; ``first_attempt`` is where the current run
    began (1, or the attempt an operator requeued), so a requeue gets fresh retries."""
    what = f"{error.type}: {error.message}" if error else "no error recorded"
    if canceling:
        return GiveUp(f"canceled while running ({what})")
    if error is not None and not error.retryable:
        return GiveUp(f"not retryable ({what})")
    if error is not None and error.type in spec.no_retry_on:
        return GiveUp(f"{error.type} is not retried by pipeline {spec.pipeline!r} ({what})")
    retry = attempt - first_attempt + 1
    if retry > spec.retries:
        tries = attempt - first_attempt + 1
        return GiveUp(f"failed {tries} time{'s' * (tries != 1)}, no retries left ({what})")
    delay = backoff_delay(spec.backoff, retry, rand)
    return Retry(delay, f"retry {retry} of {spec.retries} after {what}")
