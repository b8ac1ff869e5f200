"""Throughput of hookline's worker, of the whole path, and of RQ and taskiq beside it.

    flock /tmp/hookline-bench.lock uv run --group bench python bench/throughput/run.py

Every part uses one private redis-server with AOF on (appendfsync everysec) and prints
a markdown table. Parts (``--parts``, default all):

* ``stage``: N ``job.queued`` entries of the no-op handler pre-loaded, then one worker
  process (and then two) drains them with ``--burst``; timed from the first entry
  read to the last one acknowledged (its ``job.finished`` written in the same EXEC).
* ``others``: the same N no-op jobs through taskiq (Redis Streams broker, one then two
  processes), RQ's SimpleWorker and RQ's default (forking) worker, timed the same way.
* ``path``: signed webhooks posted to the ingress over HTTP, through dispatcher, worker
  and status: jobs/s until the last job is ``finished`` in the status API, and the
  webhook→finished latency at a steady 200 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis as redis_sync
from hookline.embedded_redis import EmbeddedRedis, free_port
from hookline.events import HandlerRun, JobQueued, JobSpec, encode
from hookline.keys import EVENT_FIELD, GROUP_WORKERS, Keys
from hookline.samples import SAMPLES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
NOOP_SPEC = JobSpec(pipeline="noop", run=HandlerRun(path="hookline_worker.demo:noop"), timeout=60)


@dataclass
class Row:
    system: str
    processes: int
    jobs: int
    seconds: float
    rss_mb: float
    cpu_s: float = float("nan")  # CPU time of the queue's own processes
    redis_cpu_s: float = float("nan")
    note: str = ""

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("nan")

    @property
    def per_cpu(self) -> float:
        return self.jobs / self.cpu_s if self.cpu_s > 0 else float("nan")


class CpuMeter:
    """CPU seconds used by our reaped children and by redis-server between two points:
    on a shared machine, jobs per CPU-second is steadier than jobs per second."""

    def __init__(self, r: redis_sync.Redis) -> None:
        self.r = r
        self.children = self._children()
        self.redis = self._redis()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _redis(self) -> float:
        info = self.r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def read(self) -> tuple[float, float]:
        return self._children() - self.children, self._redis() - self.redis


# -- measuring ---------------------------------------------------------------------
def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes and all their descendants, in MB."""
    total = 0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes, their live descendants and the
    descendants they reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return total / tick


class Peak:
    """The largest RSS seen of a set of processes while polling, and the CPU they used
    between the first job and the last."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.value = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_done = 0.0

    def sample(self, every: float = 0.1) -> None:
        now = time.monotonic()
        if now - self.last >= every:
            self.last = now
            self.value = max(self.value, rss_mb(self.pids))


def wait_drained(
    first: Callable[[], bool], done: Callable[[], bool], peak: Peak, timeout: float
) -> tuple[float, float]:
    """Poll until work starts (``first``) and until it is all done; their times."""
    deadline = time.monotonic() + timeout
    t_first = None
    while time.monotonic() < deadline:
        peak.sample()
        if t_first is None and first():
            t_first = time.monotonic()
            peak.cpu_first = tree_cpu(peak.pids)
        if t_first is not None and done():
            peak.cpu_done = tree_cpu(peak.pids)
            return t_first, time.monotonic()
        time.sleep(0.002)
    raise TimeoutError("the jobs were not drained in time")


def group_state(r: redis_sync.Redis, stream: str, group: str) -> tuple[bytes, int] | None:
    """(last delivered id, pending) of a consumer group, None before it exists. (The
    group's lag and entries-read are not reliable enough to count on.)"""
    try:
        groups = r.xinfo_groups(stream)
    except redis_sync.ResponseError:
        return None
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            last = g["last-delivered-id"]
            return (last if isinstance(last, bytes) else str(last).encode()), int(g["pending"])
    return None


def stream_drained(
    r: redis_sync.Redis, stream: str, group: str
) -> tuple[Callable[[], bool], Callable[[], bool]]:
    """Work started: something was delivered. Done: the last entry was delivered and
    nothing is pending (every entry acknowledged)."""
    reply = r.xrevrange(stream, count=1)
    assert reply, f"{stream} is empty"
    (newest,) = reply
    last_id = newest[0]

    def first() -> bool:
        state = group_state(r, stream, group)
        return state is not None and state[0] not in (b"0-0", b"0")

    def done() -> bool:
        state = group_state(r, stream, group)
        return state is not None and state[0] == last_id and state[1] == 0

    return first, done


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


# -- hookline worker stage ---------------------------------------------------------
def preload_hookline(r: redis_sync.Redis, keys: Keys, n: int) -> str:
    stream = keys.job_queued(NOOP_SPEC.queue)
    for start in range(0, n, 1000):
        with r.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                job = JobQueued(job_id=f"b{i}", delivery_id=f"d{i}", spec=NOOP_SPEC)
                pipe.xadd(stream, {EVENT_FIELD: encode(job)})
            pipe.execute()
    return stream


def hookline_stage(url: str, n: int, procs: int, args: argparse.Namespace, logs: Path) -> Row:
    r = redis_sync.Redis.from_url(url)
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    stream = preload_hookline(r, keys, n)
    env = {
        "REDIS_URL": url,
        "HOOKLINE_PREFIX": keys.prefix,
        "HOOKLINE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        "HOOKLINE_LOG_FORMAT": "json",
        "HOOKLINE_WORKER_PORT": "0",
    }
    argv = [PY, "-m", "hookline_worker", "--burst", "--concurrency", str(args.concurrency)]
    argv += ["--batch", str(args.batch)]
    cpu = CpuMeter(r)
    workers = [
        spawn([*argv, "--name", f"bench-{i}"], env, logs / f"hookline-{procs}-{i}.log")
        for i in range(procs)
    ]
    peak = Peak([w.pid for w in workers])
    first, done = stream_drained(r, stream, GROUP_WORKERS)
    t0, t1 = wait_drained(first, done, peak, timeout=600)
    for w in workers:
        w.wait(60)
    codes = {w.returncode for w in workers}
    _, redis_cpu = cpu.read()
    cpu_s = peak.cpu_done - peak.cpu_first
    finished = r.xlen(keys.job_finished)
    note = "" if codes == {0} else f"exit codes {sorted(codes)}"
    if finished != n:
        note += f" only {finished} job.finished"
    return Row("hookline worker", procs, n, t1 - t0, peak.value, cpu_s, redis_cpu, note.strip())


# -- taskiq and RQ -----------------------------------------------------------------
def taskiq_stage(url: str, n: int, procs: int, args: argparse.Namespace, logs: Path) -> Row:
    env = {"BENCH_REDIS_URL": url, "PYTHONPATH": str(HERE)}
    r = redis_sync.Redis.from_url(url)
    r.delete("bench-taskiq")
    loader = [PY, "-c", _TASKIQ_LOAD, str(n)]
    subprocess.run(loader, env={**os.environ, **env}, cwd=HERE, check=True)
    argv = [PY, "-m", "taskiq", "worker", "bench_tasks:broker", "--workers", str(procs)]
    argv += ["--max-async-tasks", str(args.concurrency), "--no-configure-logging"]
    cpu = CpuMeter(r)
    worker = spawn(argv, env, logs / f"taskiq-{procs}.log", cwd=HERE)
    peak = Peak([worker.pid])
    first, done = stream_drained(r, "bench-taskiq", "taskiq")
    try:
        t0, t1 = wait_drained(first, done, peak, timeout=600)
    finally:
        stop([worker])
    _, redis_cpu = cpu.read()
    cpu_s = peak.cpu_done - peak.cpu_first
    return Row("taskiq (Redis Streams broker)", procs, n, t1 - t0, peak.value, cpu_s, redis_cpu)


_TASKIQ_LOAD = """
import asyncio, sys
from bench_tasks import broker, taskiq_noop
async def main(n):
    await broker.startup()
    for start in range(0, n, 100):  # 100 at a time: one connection each
        await asyncio.gather(*(taskiq_noop.kiq() for _ in range(start, min(n, start + 100))))
    await broker.shutdown()
asyncio.run(main(int(sys.argv[1])))
"""


def rq_stage(url: str, n: int, worker_class: str, label: str, logs: Path) -> Row:
    import bench_rq
    from rq import Queue

    r = redis_sync.Redis.from_url(url)
    name = f"bench{uuid.uuid4().hex[:6]}"
    queue = Queue(name, connection=r)
    for start in range(0, n, 1000):
        with r.pipeline() as pipe:
            data = [
                Queue.prepare_data(bench_rq.noop, result_ttl=3600)
                for _ in range(start, min(n, start + 1000))
            ]
            queue.enqueue_many(data, pipeline=pipe)
            pipe.execute()
    argv = [PY, "-m", "rq.cli", "worker", "--burst", "--url", url, "--path", str(HERE)]
    argv += ["-w", worker_class, "--logging_level", "WARNING", name]
    cpu = CpuMeter(r)
    worker = spawn(argv, {"PYTHONPATH": str(HERE)}, logs / f"rq-{label}.log", cwd=HERE)
    peak = Peak([worker.pid])
    finished_key = f"rq:finished:{name}"

    def first() -> bool:
        return int(r.llen(f"rq:queue:{name}")) < n

    def done() -> bool:
        return int(r.zcard(finished_key)) >= n

    try:
        t0, t1 = wait_drained(first, done, peak, timeout=3600)
    finally:
        stop([worker])
    _, redis_cpu = cpu.read()
    cpu_s = peak.cpu_done - peak.cpu_first
    return Row(label, 1, n, t1 - t0, peak.value, cpu_s, redis_cpu)


# -- whole path --------------------------------------------------------------------
@dataclass
class PathResult:
    jobs: int
    seconds: float
    steady_jobs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss: dict[str, float]
    cpu: dict[str, float]
    pipeline: str


def whole_path(url: str, args: argparse.Namespace, logs: Path, tmp: Path) -> PathResult:
    return asyncio.run(_whole_path(url, args, logs, tmp))


async def _whole_path(url: str, args: argparse.Namespace, logs: Path, tmp: Path) -> PathResult:
    import aiohttp
    from hookline import signing

    secret = "bench-secret-0123456789"
    prefix = f"path{uuid.uuid4().hex[:8]}"
    config = tmp / "hookline.toml"
    config.write_text(
        '[pipelines.noop]\nhandler = "hookline_worker.demo:noop"\n\n'
        '[[routes]]\nevents = ["push"]\npipeline = "noop"\n'
    )
    ports = {name: free_port() for name in ("ingress", "dispatcher", "worker", "status")}
    env = {
        "REDIS_URL": url,
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": secret,
        "HOOKLINE_CONFIG": str(config),
        "HOOKLINE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        "HOOKLINE_LOG_FORMAT": "json",
        "HOOKLINE_ARTIFACTS_DIR": str(tmp / "artifacts"),
        "HOOKLINE_WORK_DIR": str(tmp / "work"),
        "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp / "spool"),
        **{f"HOOKLINE_{k.upper()}_PORT": str(v) for k, v in ports.items()},
        "HOOKLINE_STATUS_URL": f"http://127.0.0.1:{ports['status']}",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in ("status", "dispatcher", "worker", "ingress"):
        argv = [PY, "-m", f"hookline_{name}"]
        if name == "worker":
            argv += ["--concurrency", str(args.concurrency), "--batch", str(args.batch)]
        procs[name] = spawn(argv, env, logs / f"path-{name}.log")
    peaks = {name: Peak([p.pid]) for name, p in procs.items()}
    body = (SAMPLES / "push" / "with-new-branch.payload.json").read_bytes()
    ingress = f"http://127.0.0.1:{ports['ingress']}/webhook"
    status = f"http://127.0.0.1:{ports['status']}"
    connector = aiohttp.TCPConnector(limit=64)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            for name, port in ports.items():
                await _wait_healthy(http, f"http://127.0.0.1:{port}/health", procs[name])

            async def post() -> tuple[str, float]:
                delivery = str(uuid.uuid4())
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": signing.sign(secret, body),
                }
                sent = time.time()
                async with http.post(ingress, data=body, headers=headers) as reply:
                    answer = await reply.json()
                    assert reply.status == 202, answer
                return str(answer["job_id"]), sent

            def sample() -> None:
                for peak in peaks.values():
                    peak.sample()

            # Throughput: N webhooks as fast as 32 concurrent clients post them.
            cpu0 = {name: tree_cpu([p.pid]) for name, p in procs.items()}
            t0 = time.monotonic()
            gate = asyncio.Semaphore(32)

            async def limited() -> tuple[str, float]:
                async with gate:
                    sample()
                    return await post()

            sent = await asyncio.gather(*(limited() for _ in range(args.path_jobs)))
            await _wait_finished(http, status, [job for job, _ in sent], sample)
            seconds = time.monotonic() - t0
            cpu = {name: tree_cpu([p.pid]) - cpu0[name] for name, p in procs.items()}

            # Latency: a steady 200 jobs/s.
            steady: list[tuple[str, float]] = []
            rate = args.steady_rate
            count = int(rate * args.steady_seconds)
            start = time.monotonic()
            tasks = []
            for i in range(count):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sample()
                tasks.append(asyncio.create_task(post()))
            steady = list(await asyncio.gather(*tasks))
            views = await _wait_finished(http, status, [job for job, _ in steady], sample)
            latencies = []
            for (_job_id, sent_at), view in zip(steady, views, strict=True):
                ended = datetime.fromisoformat(str(view["ended_at"])).timestamp()
                latencies.append((ended - sent_at) * 1000)
            pipeline = str(views[0].get("pipeline"))
    finally:
        stop(list(procs.values()))
    latencies.sort()
    return PathResult(
        jobs=args.path_jobs,
        seconds=seconds,
        steady_jobs=count,
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[int(len(latencies) * 0.99) - 1],
        max_ms=latencies[-1],
        rss={name: peak.value for name, peak in peaks.items()},
        cpu=cpu,
        pipeline=pipeline,
    )


async def _wait_healthy(http: object, url: str, proc: subprocess.Popen[bytes]) -> None:
    import aiohttp

    assert isinstance(http, aiohttp.ClientSession)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            async with http.get(url) as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} not healthy")


async def _wait_finished(
    http: object, status: str, job_ids: list[str], sample: Callable[[], None]
) -> list[dict[str, object]]:
    """Poll the status API until every job is finished (the last queued first)."""
    import aiohttp

    assert isinstance(http, aiohttp.ClientSession)

    async def view(job_id: str) -> dict[str, object]:
        async with http.get(f"{status}/jobs/{job_id}") as reply:
            return await reply.json() if reply.status == 200 else {}

    deadline = time.monotonic() + 600
    while (await view(job_ids[-1])).get("status") != "finished":
        sample()
        if time.monotonic() > deadline:
            raise TimeoutError("jobs did not finish")
        await asyncio.sleep(0.005)
    views: dict[str, dict[str, object]] = {}
    todo = list(job_ids)
    while todo:
        got = await asyncio.gather(*(view(j) for j in todo))
        for job_id, body in zip(todo, got, strict=True):
            if body.get("status") == "finished":
                views[job_id] = body
            elif body.get("status") in ("failed", "canceled"):
                raise RuntimeError(f"job {job_id} ended {body.get('status')}: {body}")
        todo = [j for j in todo if j not in views]
        if todo:
            sample()
            await asyncio.sleep(0.01)
    return [views[j] for j in job_ids]


# -- report ------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    base = next((r for r in rows if r.system.startswith("taskiq") and r.processes == 1), None)
    lines = [
        "| system | processes | jobs | seconds | jobs/s | vs taskiq (1 process) "
        "| worker CPU s | jobs per worker CPU-second | Redis CPU s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = f"{row.rate / base.rate:.2f}x" if base else "n/a"
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.system}{note} | {row.processes} | {row.jobs} | {row.seconds:.2f} "
            f"| {row.rate:,.0f} | {ratio} | {row.cpu_s:.2f} | {row.per_cpu:,.0f} "
            f"| {row.redis_cpu_s:.2f} | {row.rss_mb:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per run")
    parser.add_argument("--rq-default-jobs", type=int, default=None,
                        help="jobs for RQ's forking worker (default: --jobs)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--path-jobs", type=int, default=5000)
    parser.add_argument("--steady-rate", type=float, default=200.0)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--parts", default="stage,others,path")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as raw:
        tmp = Path(raw)
        logs = tmp / "logs"
        logs.mkdir()
        server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
        try:
            rows: list[Row] = []
            if "stage" in parts:
                rows.append(hookline_stage(server.url, args.jobs, 1, args, logs))
                rows.append(hookline_stage(server.url, args.jobs, 2, args, logs))
            if "others" in parts:
                rows.append(taskiq_stage(server.url, args.jobs, 1, args, logs))
                rows.append(taskiq_stage(server.url, args.jobs, 2, args, logs))
                rows.append(
                    rq_stage(
                        server.url, args.jobs, "rq.worker.SimpleWorker", "RQ SimpleWorker", logs
                    )
                )
                rq_n = args.rq_default_jobs or args.jobs
                rows.append(
                    rq_stage(server.url, rq_n, "rq.worker.Worker", "RQ default worker", logs)
                )
            if rows:
                cores = os.cpu_count()
                print(f"\nWorker stage: no-op jobs, Redis with AOF (everysec), {cores} cores\n")
                print(table(rows))
            if "path" in parts:
                result = whole_path(server.url, args, logs, tmp)
                print(f"\nWhole path (ingress → dispatcher → worker → status, pipeline "
                      f"{result.pipeline!r})\n")  # fmt: skip
                print("| measure | value |\n| --- | ---: |")
                print(f"| webhooks posted over HTTP | {result.jobs} |")
                print(f"| jobs/s until the last is finished in the status API "
                      f"| {result.jobs / result.seconds:,.0f} |")  # fmt: skip
                print(f"| steady load | {args.steady_rate:g} jobs/s, {result.steady_jobs} jobs |")
                print(f"| webhook → finished p50 | {result.p50_ms:.1f} ms |")
                print(f"| webhook → finished p99 | {result.p99_ms:.1f} ms |")
                print(f"| webhook → finished max | {result.max_ms:.1f} ms |")
                for name, mb in result.rss.items():
                    print(f"| peak RSS {name} | {mb:.0f} MB |")
                for name, cpu_s in result.cpu.items():
                    per_job = cpu_s / result.jobs * 1e6
                    print(f"| CPU per job, {name} (throughput run) | {per_job:.0f} µs |")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
