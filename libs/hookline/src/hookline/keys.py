"""Every Redis key and stream name hookline uses; nothing else formats a key.

All keys share one Redis Cluster hash tag (``{prefix}``) so that the MULTI/EXEC
transactions and Lua scripts that touch several of them stay valid on a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "hookline"
DEFAULT_QUEUE = "pipeline_tasks"

GROUP_DISPATCHER = "dispatcher"
GROUP_WORKERS = "workers"
GROUP_STATUS = "status"

# Stream entries hold one encoded event under this field.
EVENT_FIELD = b"e"

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_name(kind: str, value: str) -> str:
    """Validate a prefix or queue name so it cannot escape its hash tag or key shape."""
    if not _NAME.match(value):
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return value


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix, e.g. ``{hookline}:job.started``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_name("key prefix", self.prefix)

    @property
    def base(self) -> str:
        return "{" + self.prefix + "}"

    # -- streams ---------------------------------------------------------------
    @property
    def webhook_received(self) -> str:
        return f"{self.base}:webhook.received"

    def job_queued(self, queue: str) -> str:
        return f"{self.base}:job.queued.{queue}"

    @property
    def job_queued_prefix(self) -> str:
        return f"{self.base}:job.queued."

    def queue_of_stream(self, stream: str) -> str | None:
        """The queue name of a ``job.queued.<queue>`` stream, else None."""
        head = self.job_queued_prefix
        return stream[len(head) :] if stream.startswith(head) else None

    @property
    def job_started(self) -> str:
        return f"{self.base}:job.started"

    @property
    def job_finished(self) -> str:
        return f"{self.base}:job.finished"

    @property
    def job_deferred(self) -> str:
        return f"{self.base}:job.deferred"

    @property
    def commands(self) -> str:
        return f"{self.base}:commands"

    @property
    def dead_letter(self) -> str:
        return f"{self.base}:dead-letter"

    # -- registries and private state -----------------------------------------
    @property
    def queues(self) -> str:
        """Set of every queue name a job was ever queued on."""
        return f"{self.base}:queues"

    def delivery(self, delivery_id: str) -> str:
        """Ingress dedupe marker of one GitHub delivery (value: the job id)."""
        return f"{self.base}:delivery:{delivery_id}"

    def dispatched(self, job_id: str, attempt: int) -> str:
        """Marker that attempt N of a job was queued once (dispatcher dedupe)."""
        return f"{self.base}:dispatched:{job_id}:{attempt}"

    @property
    def delayed(self) -> str:
        """Sorted set of events to append later, scored by due time (ms)."""
        return f"{self.base}:delayed"

    # -- projection (owned by the status service) -------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    def jobs_index(self, status: str) -> str:
        """Sorted set of job ids with this status (or "all"), scored by creation time."""
        return f"{self.base}:jobs:{status}"

    @property
    def workers(self) -> str:
        """Sorted set of worker names scored by their last heartbeat (ms)."""
        return f"{self.base}:workers"

    def worker(self, name: str) -> str:
        """Hash describing one worker (host, pid, queues, current jobs...)."""
        return f"{self.base}:worker:{name}"

    # -- worker control --------------------------------------------------------
    def cancel(self, job_id: str) -> str:
        """Cancel marker of a job: its value is the highest attempt to cancel."""
        return f"{self.base}:cancel:{job_id}"

    @property
    def control(self) -> str:
        """Pub/sub channel on which a cancel publishes the job id (workers listen)."""
        return f"{self.base}:control"

    def all_streams(self, queues: list[str]) -> list[str]:
        """Every event stream, with the queue streams of ``queues``."""
        return [
            self.webhook_received,
            *(self.job_queued(q) for q in queues),
            self.job_started,
            self.job_finished,
            self.job_deferred,
        ]
