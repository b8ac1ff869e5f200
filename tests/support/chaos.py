"""The chaos run: the whole system as real processes, N real signed webhooks, and a
seeded schedule of crashes, restarts and outages. Then count what was lost.

Used by ``tests/e2e/test_chaos.py`` (N = 500) and ``bench/reliability`` (longer runs).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import redis as sync_redis
from hookline.embedded_redis import EmbeddedRedis
from hookline.events import JobStarted, WebhookReceived
from hookline.keys import EVENT_FIELD, Keys

from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, http_json
from support.streams import entries, events
from support.tcp_proxy import TcpProxy
from support.waiting import wait_until

SECRET = "chaos-webhook-secret-4b1d"
ADMIN_TOKEN = "chaos-admin-token-9f3e"
FAULTS = (
    "kill_worker",
    "restart_dispatcher",
    "restart_status",
    "restart_redis",
    "redis_away_from_ingress",
)
# A sick Redis, each its own function below (SickRedis): run on their own or added to
# a run's ``faults``.
SICK_REDIS_FAULTS = ("eviction", "frozen_redis_restarts")
CONFIG = """
[pipelines.record]
handler = "support.pipelines:record"
timeout = "30s"
retries = 2
backoff = { kind = "fixed", base = "1s" }

[[routes]]
events = ["push"]
pipeline = "record"
"""


@dataclass
class Fault:
    at: float  # seconds since the run started
    kind: str
    recovered_after: float | None = None
    worker: str | None = None  # kill_worker: the worker killed
    wall: float = 0.0  # kill_worker: when, by the wall clock
    rerun_after: float | None = None  # kill_worker: until its jobs ran again (worst)


@dataclass
class Report:
    seed: int
    appendfsync: str
    redis_kill: str
    deliveries: int = 0
    accepted: int = 0
    jobs: int = 0
    lost: int = 0
    duplicate_jobs: int = 0
    not_final: int = 0
    failed: int = 0
    executed_more_than_once: int = 0
    metrics_match: bool = False
    retries_lost: int = 0
    dead_letters_missing: int = 0
    faults: list[Fault] = field(default_factory=list)
    leaked_secrets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    appended_while_unsafe: int = 0  # webhooks Redis took while it might evict them: goal 0
    worst_frozen_answer: float = 0.0  # /readyz or /health of a service under a frozen Redis

    @property
    def worst_recovery(self) -> float:
        times = [f.recovered_after for f in self.faults if f.recovered_after is not None]
        return max(times, default=0.0)

    @property
    def worst_kill_rerun(self) -> float:
        """The longest a kill -9'd worker's job waited to run again."""
        times = [f.rerun_after for f in self.faults if f.rerun_after is not None]
        return max(times, default=0.0)

    def by_fault(self) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for fault in self.faults:
            count, worst = out.get(fault.kind, (0, 0.0))
            out[fault.kind] = (count + 1, max(worst, fault.recovered_after or 0.0))
        return out


class ChaosRun:
    def __init__(
        self,
        workdir: Path,
        *,
        seed: int = 7,
        deliveries: int = 500,
        rate: float = 40.0,
        workers: int = 2,
        appendfsync: str = "always",
        redis_kill: str = "sigkill",
        fault_every: tuple[float, float] = (1.5, 3.0),
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.deliveries = deliveries
        self.rate = rate
        self.worker_count = workers
        self.appendfsync = appendfsync
        self.redis_kill = redis_kill
        self.fault_every = fault_every
        self.fault_kinds = faults
        self.prefix = f"chaos{seed}"
        self.keys = Keys(self.prefix)
        self.record = workdir / "executions.log"
        self.logs = workdir / "logs"
        self.accepted: dict[str, tuple[str, float]] = {}  # delivery -> (job id, when)
        self.answers: Counter[int] = Counter()
        self.processes: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self.start = 0.0
        self.sick = SickRedis()

    # -- system ------------------------------------------------------------------------
    def _env(self, redis_url: str) -> dict[str, str]:
        config = self.workdir / "hookline.toml"
        config.write_text(CONFIG)
        tests_dir = str(Path(__file__).resolve().parents[1])
        return {
            "REDIS_URL": redis_url,
            "HOOKLINE_PREFIX": self.prefix,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOOKLINE_ADMIN_TOKEN": ADMIN_TOKEN,
            "HOOKLINE_CONFIG": str(config),
            "HOOKLINE_TEST_RECORD": str(self.record),
            "PYTHONPATH": tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HOOKLINE_ARTIFACTS_DIR": str(self.workdir / "artifacts"),
            "HOOKLINE_WORK_DIR": str(self.workdir / "work"),
            "HOOKLINE_INGRESS_SPOOL_DIR": str(self.workdir / "spool"),
            "HOOKLINE_INGRESS_REDIS_TIMEOUT": "0.5s",
            "HOOKLINE_WORKER_LEASE_TIMEOUT": "3s",
            "HOOKLINE_DISPATCHER_CLAIM_IDLE": "3s",
            "HOOKLINE_STATUS_CLAIM_IDLE": "3s",
        }

    def _service(
        self, name: str, env: dict[str, str], args: list[str] | None = None
    ) -> ServiceProcess:
        proc = ServiceProcess(name, env, self.logs, args=args).start(timeout=30)
        self.processes.append(proc)
        return proc

    def _new_worker(self) -> ServiceProcess:
        index = len(self.workers) + 1
        worker = self._service(
            "worker", self.env, ["--name", f"chaos-w{index}", "--concurrency", "4"]
        )
        self.workers.append(worker)
        return worker

    def boot(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(self.workdir / "redis", appendfsync=self.appendfsync).start()
        self.proxy = TcpProxy(self.redis.port)
        self.env = self._env(self.redis.url)
        ingress_env = {**self.env, "REDIS_URL": f"redis://127.0.0.1:{self.proxy.port}/0"}
        self.status = self._service("status", self.env)
        self.dispatcher = self._service("dispatcher", self.env)
        for _ in range(self.worker_count):
            self._new_worker()
        self.ingress = self._service("ingress", ingress_env)

    def shutdown(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=20)
        self.proxy.close()
        self.redis.stop()

    # -- load ----------------------------------------------------------------------------
    def _deliver_all(self) -> None:
        body = payload("push", "with-new-branch.payload.json")
        conn = http.client.HTTPConnection("127.0.0.1", self.ingress.port, timeout=15)
        interval = 1.0 / self.rate
        for i in range(self.deliveries):
            due = self.start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load generator, not synchronisation
            delivery = f"chaos-{self.seed}-{i}"
            status, answer = self._post(conn, body, delivery)
            if status is None:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.ingress.port, timeout=15)
                status, answer = self._post(conn, body, delivery)
            self.answers[status or 0] += 1
            if status == 202 and answer:
                self.accepted[delivery] = (answer["job_id"], time.monotonic() - self.start)
        conn.close()

    def _post(
        self, conn: http.client.HTTPConnection, body: bytes, delivery: str
    ) -> tuple[int | None, dict[str, Any] | None]:
        try:
            conn.request(
                "POST",
                "/webhook",
                body=body,
                headers=signed_headers(SECRET, body, "push", delivery),
            )
            reply = conn.getresponse()
            data = reply.read()
            return reply.status, json.loads(data) if reply.status == 202 else None
        except (OSError, http.client.HTTPException):
            return None, None

    # -- faults ----------------------------------------------------------------------------
    def schedule(self, duration: float) -> list[Fault]:
        """Fault times spread over ``duration``; the kinds come in seeded shuffles of
        every kind, so each kind is injected before any kind repeats."""
        faults: list[Fault] = []
        kinds: list[str] = []
        at = 1.0
        low, high = self.fault_every
        while at < duration:
            if not kinds:
                kinds = self.rng.sample(self.fault_kinds, len(self.fault_kinds))
            faults.append(Fault(round(at, 2), kinds.pop()))
            at += self.rng.uniform(low, high)
        return faults

    def inject(self, fault: Fault) -> None:
        match fault.kind:
            case "kill_worker":
                live = [w for w in self.workers if w.process and w.process.poll() is None]
                doomed = self.rng.choice(live)
                doomed.kill()
                fault.worker = doomed.args[doomed.args.index("--name") + 1]
                fault.wall = time.time()
                self._new_worker()
            case "restart_dispatcher":
                self._restart(self.dispatcher)
            case "restart_status":
                self._restart(self.status)
            case "restart_redis":
                if self.redis_kill == "sigkill":
                    self.redis.kill()
                else:
                    self.redis.stop()
                self.redis.start()
            case "redis_away_from_ingress":
                self.proxy.cut()
                time.sleep(self.rng.uniform(2.0, 4.0))  # the outage itself
                self.proxy.restore()
            case "eviction":
                self.sick.eviction(self)
            case "frozen_redis_restarts":
                self.sick.frozen_with_restarts(self)
            case _:
                raise ValueError(fault.kind)

    def _restart(self, proc: ServiceProcess) -> None:
        if self.rng.random() < 0.5:
            proc.kill()
        else:
            proc.stop()
        proc.start(timeout=30)

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> Report:
        report = Report(self.seed, self.appendfsync, self.redis_kill)
        self.boot()
        try:
            duration = self.deliveries / self.rate
            faults = self.schedule(duration)
            self.start = time.monotonic()
            loader = threading.Thread(target=self._deliver_all, daemon=True)
            loader.start()
            for fault in faults:
                delay = self.start + fault.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the seeded schedule
                fault.at = time.monotonic() - self.start
                self.inject(fault)
            loader.join(timeout=duration + 120)
            report.faults = faults
            self._settle()
            self._count(report)
        finally:
            report.seconds = time.monotonic() - self.start
            self.shutdown()
        report.leaked_secrets = self._search_logs()
        return report

    def _views(self) -> dict[str, dict[str, Any]]:
        views = {}
        for job_id, _ in self.accepted.values():
            status, body = http_json(f"{self.status.url}/jobs/{job_id}")
            if status == 200:
                views[job_id] = body
        return views

    def _settle(self, timeout: float = 180.0) -> None:
        finals = {"finished", "failed", "canceled", "skipped"}

        def all_final() -> bool:
            try:
                views = self._views()
            except (urllib.error.URLError, OSError):
                return False
            return len(views) == len(self.accepted) and all(
                v["status"] in finals for v in views.values()
            )

        # A job that never ends is counted as not final in the report, not raised here.
        with contextlib.suppress(AssertionError):
            wait_until(all_final, timeout, interval=1.0, what="every accepted job to end")

    def _count(self, report: Report) -> None:
        report.deliveries = self.deliveries
        report.accepted = len(self.accepted)
        client = sync_redis.Redis.from_url(self.redis.url)
        per_delivery: Counter[str] = Counter()
        for event in events(client.xrange(self.keys.webhook_received)):
            if isinstance(event, WebhookReceived):
                per_delivery[event.delivery_id] += 1
        client.close()
        report.lost = sum(1 for d in self.accepted if per_delivery[d] == 0)
        report.duplicate_jobs = sum(1 for n in per_delivery.values() if n > 1)
        views = self._views()
        report.jobs = len(views)
        report.lost += len(self.accepted) - len(views)
        report.not_final = sum(
            1 for v in views.values() if v["status"] not in ("finished", "failed")
        )
        report.failed = sum(1 for v in views.values() if v["status"] == "failed")
        runs = (
            Counter(line.split()[0] for line in self.record.read_text().splitlines())
            if self.record.exists()
            else Counter()
        )
        report.executed_more_than_once = sum(1 for n in runs.values() if n > 1)
        report.metrics_match = self._metrics_match(views)
        report.appended_while_unsafe = self.sick.appended_while_unsafe
        report.worst_frozen_answer = round(self.sick.worst_answer, 3)
        self._recovery(report, views)
        attempt_counts(self.redis.url, self.keys, views, report)
        kill_reruns(self.redis.url, self.keys, report.faults)

    def _metrics_match(self, views: dict[str, dict[str, Any]]) -> bool:
        import urllib.request

        with urllib.request.urlopen(f"{self.status.url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        totals: Counter[str] = Counter()
        for line in text.splitlines():
            if line.startswith("hookline_jobs_completed_total{"):
                labels, value = line.rsplit(" ", 1)
                outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
                totals[outcome] += int(float(value))
        seen = Counter(v["status"] for v in views.values())
        return all(totals[s] == seen[s] for s in ("finished", "failed"))

    def _recovery(self, report: Report, views: dict[str, dict[str, Any]]) -> None:
        """Time from each fault until a job accepted after it has finished: how long
        until new work flows end to end again."""
        from datetime import datetime

        wall_start = time.time() - (time.monotonic() - self.start)
        finished_after: list[tuple[float, float]] = []
        for job_id, accepted_at in self.accepted.values():
            view = views.get(job_id)
            if view and view.get("ended_at"):
                ended = datetime.fromisoformat(view["ended_at"]).timestamp() - wall_start
                finished_after.append((accepted_at, ended))
        for fault in report.faults:
            later = [ended for accepted_at, ended in finished_after if accepted_at >= fault.at]
            if later:
                fault.recovered_after = round(min(later) - fault.at, 3)

    def _search_logs(self) -> list[str]:
        leaks = []
        for path in self.logs.glob("*.log"):
            text = path.read_text(errors="replace")
            for secret in (SECRET, ADMIN_TOKEN):
                if secret in text:
                    leaks.append(f"{path.name}: {secret[:6]}…")
        return leaks


RETRIES = 2  # the chaos pipeline's retries (CONFIG)


def attempt_counts(
    redis_url: str, keys: Keys, views: dict[str, dict[str, Any]], report: Report
) -> None:
    """Retries lost: failed jobs that ran fewer attempts than their retries allow after a
    retryable error, and final jobs the dispatcher still counts as running (a run it
    did not follow). Dead letters missing: failed jobs with no dead-letter entry."""
    client = sync_redis.Redis.from_url(redis_url)
    lettered = set()
    for _, fields in entries(client.xrange(keys.dead_letter)):
        letter = msgspec.json.decode(fields[EVENT_FIELD])
        if isinstance(letter, dict) and letter.get("job_id"):
            lettered.add(letter["job_id"])
    lost = missing = 0
    for job_id, view in views.items():
        record = client.hget(keys.dispatcher_job(job_id), "phase")
        if view["status"] in ("finished", "failed") and record in (b"queued", b"started"):
            lost += 1
        if view["status"] != "failed":
            continue
        missing += job_id not in lettered
        error = view.get("error") or {}
        if error.get("retryable", True) and int(view.get("attempt") or 0) < RETRIES + 1:
            lost += 1
    client.close()
    report.retries_lost, report.dead_letters_missing = lost, missing


def kill_reruns(redis_url: str, keys: Keys, faults: list[Fault]) -> None:
    """For each kill -9 of a worker: how long until every job it was running had started
    again on another worker (from the ``job.started`` stream)."""
    client = sync_redis.Redis.from_url(redis_url)
    runs: dict[str, list[JobStarted]] = {}
    for event in events(client.xrange(keys.job_started)):
        if isinstance(event, JobStarted):
            runs.setdefault(event.job_id, []).append(event)
    client.close()
    for fault in faults:
        if fault.kind != "kill_worker" or fault.worker is None:
            continue
        waits = []
        for started in runs.values():
            mine = [s for s in started if s.worker == fault.worker]
            if not mine or mine[-1].occurred_at.timestamp() > fault.wall:
                continue
            later = [
                s.occurred_at.timestamp() - fault.wall
                for s in started
                if s.attempt > mine[-1].attempt and s.occurred_at.timestamp() >= fault.wall
            ]
            if later:
                waits.append(min(later))
        fault.rerun_after = round(max(waits), 3) if waits else None


def reruns(report: Report) -> str:
    """Each kill -9's time until its worker's jobs ran again (``-``: it ran none)."""
    kills = [f for f in report.faults if f.kind == "kill_worker"]
    return ", ".join(f"{f.rerun_after:.1f}" if f.rerun_after is not None else "-" for f in kills)


class SickRedis:
    """The faults of a sick Redis, and what they measured."""

    def __init__(self) -> None:
        self.appended_while_unsafe = 0
        self.worst_answer = 0.0

    def eviction(self, run: ChaosRun) -> None:
        """``maxmemory-policy allkeys-lru`` for a few seconds: once the ingress has seen
        it, nothing more may be appended (it spools, and says why in /health), and the
        spool drains once the policy is back to noeviction."""
        client = sync_redis.Redis.from_url(run.redis.url)
        try:
            client.config_set("maxmemory-policy", "allkeys-lru")
            wait_until(lambda: _says(run.ingress, "allkeys-lru"), 10, what="ingress to refuse")
            last = _last_id(client, run.keys.webhook_received)
            time.sleep(run.rng.uniform(2.0, 4.0))  # the fault itself
            appended = (
                entries(client.xrange(run.keys.webhook_received, f"({last}", "+")) if last else []
            )
            self.appended_while_unsafe += len(appended)
        finally:
            client.config_set("maxmemory-policy", "noeviction")
            client.close()

    def frozen_with_restarts(self, run: ChaosRun) -> None:
        """Redis frozen (SIGSTOP) while status and the dispatcher restart: each must answer
        /livez at once and /readyz and /health within a second, saying what is wrong,
        while the ingress keeps answering (spooling) within its deadline."""
        assert run.redis.process is not None
        pid = run.redis.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for proc in (run.status, run.dispatcher):
                proc.kill()  # a crash: a frozen Redis would hold a clean stop anyway
            for proc in (run.status, run.dispatcher):
                proc.start(wait=False)
            for proc in (run.status, run.dispatcher, run.ingress):
                proc.wait_healthy(30, path="/livez")
                for path in ("/readyz", "/health"):
                    began = time.monotonic()
                    _answers(proc, path)
                    self.worst_answer = max(self.worst_answer, time.monotonic() - began)
            time.sleep(run.rng.uniform(0.5, 1.5))  # frozen a little longer
        finally:
            os.kill(pid, signal.SIGCONT)


def _answers(proc: ServiceProcess, path: str) -> bool:
    try:
        http_json(f"{proc.url}{path}", timeout=5)
    except (urllib.error.URLError, OSError):
        return False
    return True


def _says(proc: ServiceProcess, problem: str) -> bool:
    try:
        _, body = http_json(f"{proc.url}/health", timeout=5)
    except (urllib.error.URLError, OSError):
        return False
    return isinstance(body, dict) and any(problem in p for p in body.get("problems", ()))


def _last_id(client: sync_redis.Redis, stream: str) -> str | None:
    entries: Any = client.xrevrange(stream, count=1)
    return entries[0][0].decode() if entries else None


def markdown(reports: list[Report]) -> str:
    head = (
        "| seed | appendfsync | Redis stop | deliveries | accepted | jobs | lost | "
        "duplicate jobs | executed twice+ | not final | retries lost | dead letters missing | "
        "worst recovery (s) | kill -9 rerun (s) | appended while unsafe | "
        "worst answer, frozen Redis (s) | faults |"
    )
    rows = [head, "|" + "---|" * 17]
    for r in reports:
        faults = ", ".join(f"{k} x{n} (<={w:.1f}s)" for k, (n, w) in sorted(r.by_fault().items()))
        rows.append(
            f"| {r.seed} | {r.appendfsync} | {r.redis_kill} | {r.deliveries} | "
            f"{r.accepted} | {r.jobs} | {r.lost} | {r.duplicate_jobs} | "
            f"{r.executed_more_than_once} | {r.not_final} | {r.retries_lost} | "
            f"{r.dead_letters_missing} | {r.worst_recovery:.2f} | {reruns(r)} | "
            f"{r.appended_while_unsafe} | {r.worst_frozen_answer:.2f} | {faults} |"
        )
    return "\n".join(rows)
