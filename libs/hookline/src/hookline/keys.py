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

    # -- dispatcher: private state --------------------------------------------
    @property
    def delayed_events(self) -> str:
        """Hash: member of :attr:`delayed` -> ``<stream>\\n<encoded event>`` to append."""
        return f"{self.base}:delayed:events"

    def dispatcher_job(self, job_id: str) -> str:
        """Hash: the dispatcher's own record of one job (phase, attempt, last job.queued)."""
        return f"{self.base}:dispatcher:job:{job_id}"

    @property
    def dispatcher_failed(self) -> str:
        """Sorted set of job ids whose last attempt failed for good, scored by time (ms)."""
        return f"{self.base}:dispatcher:failed"

    def supersede_slot(self, digest: str) -> str:
        """The newest job of one (route, repository, branch): ``<created ms> <job id>``."""
        return f"{self.base}:dispatcher:supersede:{digest}"

    # -- commands and cancellation (dispatcher -> senders, dispatcher -> workers) -
    def command_answer(self, command_id: str) -> str:
        """List the dispatcher pushes its answer to a command onto (BLPOP by the sender)."""
        return f"{self.base}:answer:{command_id}"

    def cancel(self, job_id: str) -> str:
        """String: attempts up to this number of the job are canceled (set by the
        dispatcher; a worker skips or stops such attempts)."""
        return f"{self.base}:cancel:{job_id}"

    @property
    def control(self) -> str:
        """Pub/sub channel: the dispatcher publishes a job id there when it sets its
        :meth:`cancel` key, so the worker running it stops at once."""
        return f"{self.base}:control"

    @property
    def views_generation(self) -> str:
        """The generation of job views readers and the live projection use (absent: 0)."""
        return f"{self.base}:views:generation"

    @property
    def views_next_generation(self) -> str:
        """Counter handing out fresh generations to ``hookline status --rebuild``."""
        return f"{self.base}:views:next"

    @property
    def views_switching(self) -> str:
        """Set while a rebuild catches its new generation up: the live projection waits."""
        return f"{self.base}:views:switching"

    @property
    def views_rebuild_lock(self) -> str:
        """Held while a rebuild runs, so two never race."""
        return f"{self.base}:views:rebuild-lock"

    @property
    def views_root(self) -> str:
        """What every generation's keys start with, before the generation number (the
        status service names the keys of one generation)."""
        return f"{self.base}:g"

    @property
    def metrics_leader(self) -> str:
        """String: the token of the one status replica that exports the system metrics
        read from Redis, set with NX and a short PX that its holder keeps renewing."""
        return f"{self.base}:metrics:leader"

    @property
    def workers(self) -> str:
        """Sorted set of worker names scored by their last heartbeat (ms)."""
        return f"{self.base}:workers"

    @property
    def worker_liveness(self) -> str:
        """Sorted set of worker (consumer) names scored by the time (ms, Redis's clock)
        until which each is alive: refreshed every second or so, so a killed worker's
        jobs are taken over within seconds."""
        return f"{self.base}:workers.alive"

    def worker(self, name: str) -> str:
        """Hash describing one worker (host, pid, queues, current jobs...)."""
        return f"{self.base}:worker:{name}"

    def all_streams(self, queues: list[str]) -> list[str]:
        """Every event stream, with the queue streams of ``queues``."""
        return [
            self.webhook_received,
            *(self.job_queued(q) for q in queues),
            self.job_started,
            self.job_finished,
            self.job_deferred,
        ]
