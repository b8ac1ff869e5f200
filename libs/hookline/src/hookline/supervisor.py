"""``hookline up``: the whole system on one machine, each service its own OS process.

Starts Redis (``REDIS_URL`` if given, else an embedded redis-server with AOF under
``.hookline/redis``), then ingress, dispatcher, status and N workers; prints the URLs
and one ready line; records its Redis in ``.hookline/up.json`` for the operator
commands; restarts a service that dies. Each service gets only its own secrets, as files
in ``.hookline/secrets/`` (mode 0600) named by ``<VAR>_FILE``, never as values in its
environment. The first SIGINT/SIGTERM stops everything and
lets running jobs finish; a second one stops running jobs at once (the workers hand them
back); a third kills every service's process group.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hookline.backoff import restart_delay
from hookline.cli.plugins import service_modules
from hookline.config import FILE_SUFFIX, secret_value
from hookline.durations import parse_duration
from hookline.embedded_redis import EmbeddedRedis, RedisNotFound
from hookline.errors import ConfigError, HooklineError
from hookline.keys import DEFAULT_PREFIX
from hookline.parent_death import die_with_parent
from hookline.private import forget_secrets, keep_secrets
from hookline.redact import redact_url
from hookline.redis_target import UpClaim
from hookline.up_secrets import (
    SECRETS_OF,
    remove_secret_files,
    secret_values,
    write_secret_files,
)
from hookline.web import bind_socket

READY_TIMEOUT = 60.0
# A service that dies is restarted after 1 s, then 2, 4 … up to 60 s while it keeps
# dying; once it has stayed up this long, its next death starts again from 1 s.
RESTART_BASE = 1.0
RESTART_CAP = 60.0
STABLE_AFTER = 30.0
# What `up` gives its workers unless the environment says otherwise.
# What ``up`` runs, by the name each service registers its commands under.
ROLES = ("status", "dispatcher", "worker", "ingress")
WORKER_SHUTDOWN_TIMEOUT = "60s"
WORKER_KILL_GRACE = "5s"
# Beyond the workers' own deadlines: time to hand jobs back and exit.
STOP_MARGIN = 5.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    health_port: int
    secrets: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    failures: int = 0  # deaths in a row without staying up STABLE_AFTER
    due: float | None = None  # when a restart waiting out its backoff is to happen


def _stored_token(path: Path) -> str:
    """A random token kept in ``path`` (mode 0600), made on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_or_create_secret(env: Mapping[str, str], home: Path) -> tuple[str, str]:
    """The webhook secret, and where it came from (for the banner)."""
    given = secret_value(env, "GITHUB_WEBHOOK_SECRET")
    if given:
        source = "GITHUB_WEBHOOK_SECRET" + (
            FILE_SUFFIX if env.get("GITHUB_WEBHOOK_SECRET_FILE") else ""
        )
        return given, f"from {source}"
    path = home / "secret"
    if path.exists():
        return path.read_text().strip(), f"reused, stored in {path}"
    home.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, f"generated, stored in {path}"


def _seconds(env: Mapping[str, str], var: str) -> float:
    raw = env[var]
    try:
        return float(parse_duration(raw))
    except ValueError as exc:
        raise ConfigError(var, str(exc)) from None


def _port(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var) or str(default)
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(var, f"expected a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(var, f"{port} is not a TCP port")
    return port


def _check_free(host: str, port: int, setting: str) -> None:
    bind_socket(host, port, setting).close()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _services() -> dict[str, str]:
    """The module of each service ``up`` runs; ConfigError naming what is not installed."""
    modules = service_modules()
    missing = [role for role in ROLES if role not in modules]
    if missing:
        names = ", ".join(f"hookline-{role}" for role in missing)
        raise ConfigError(
            "hookline up", f"runs every service, and these are not installed: {names}"
        )
    return modules


class Supervisor:
    def __init__(
        self,
        env: Mapping[str, str],
        workers: int,
        home: Path,
        worker_concurrency: int | None = None,
    ) -> None:
        self.env = dict(env)
        self.workers = workers
        self.home = home
        self.worker_concurrency = worker_concurrency
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self.record = UpClaim(home)
        self.signals = 0
        self.job_deadline = 0.0

    def plan(self) -> None:
        """Check every port and setting before anything starts; ConfigError otherwise."""
        modules = _services()  # first: a missing service says so, whatever the ports
        env = self.env
        host = env.get("HOOKLINE_BIND_HOST", "127.0.0.1")
        ingress = _port(env, "HOOKLINE_INGRESS_PORT", 5001)
        status = _port(env, "HOOKLINE_STATUS_PORT", 5002)
        dispatcher = _port(env, "HOOKLINE_DISPATCHER_PORT", 9102)
        worker_base = _port(env, "HOOKLINE_WORKER_PORT", 9103)
        ports = {
            "HOOKLINE_INGRESS_PORT": ingress,
            "HOOKLINE_STATUS_PORT": status,
            "HOOKLINE_DISPATCHER_PORT": dispatcher,
        }
        for i in range(self.workers):
            ports[f"HOOKLINE_WORKER_PORT (+{i})"] = worker_base + i
        seen: dict[int, str] = {}
        for setting, port in ports.items():
            if port in seen:
                raise ConfigError(setting, f"port {port} is also used by {seen[port]}")
            seen[port] = setting
            _check_free(host, port, setting)
        if self.workers < 1:
            raise ConfigError("--workers", "must be at least 1")
        base = {
            **env,
            "HOOKLINE_STATUS_URL": env.get("HOOKLINE_STATUS_URL") or f"http://127.0.0.1:{status}",
        }
        forget_secrets(base)  # handed over per service, as files (see _hand_over_secrets)
        base.setdefault("HOOKLINE_ARTIFACTS_DIR", str(self.home / "artifacts"))
        base.setdefault("HOOKLINE_WORK_DIR", str(self.home / "work"))
        base.setdefault("HOOKLINE_INGRESS_SPOOL_DIR", str(self.home / "spool"))
        base.setdefault("HOOKLINE_WORKER_SHUTDOWN_TIMEOUT", WORKER_SHUTDOWN_TIMEOUT)
        base.setdefault("HOOKLINE_WORKER_KILL_GRACE", WORKER_KILL_GRACE)
        self.kill_grace = _seconds(base, "HOOKLINE_WORKER_KILL_GRACE")
        self.job_deadline = _seconds(base, "HOOKLINE_WORKER_SHUTDOWN_TIMEOUT") + self.kill_grace
        py = sys.executable

        def child(
            name: str, role: str, port: int, extra: dict[str, str], args: list[str] | None = None
        ) -> Child:
            argv = [py, "-m", modules[role], *(args or [])]
            return Child(name, argv, {**base, **extra}, port, SECRETS_OF.get(role, ()))

        self.children = [
            child(
                "status",
                "status",
                status,
                {"HOOKLINE_STATUS_PORT": str(status), "HOOKLINE_STATUS_HOST": host},
            ),
            child(
                "dispatcher",
                "dispatcher",
                dispatcher,
                {"HOOKLINE_DISPATCHER_PORT": str(dispatcher), "HOOKLINE_DISPATCHER_HOST": host},
            ),
        ]
        for i in range(self.workers):
            args = ["--name", f"{os.uname().nodename}-w{i + 1}"]
            if self.worker_concurrency:
                args += ["--concurrency", str(self.worker_concurrency)]
            self.children.append(
                child(
                    f"worker-{i + 1}",
                    "worker",
                    worker_base + i,
                    {"HOOKLINE_WORKER_PORT": str(worker_base + i), "HOOKLINE_WORKER_HOST": host},
                    args,
                )
            )
        self.children.append(
            child(
                "ingress",
                "ingress",
                ingress,
                {"HOOKLINE_INGRESS_PORT": str(ingress), "HOOKLINE_INGRESS_HOST": host},
            )
        )

    def start_redis(self) -> str:
        if url := secret_value(self.env, "REDIS_URL"):
            return url
        try:
            # A password of its own: a worker runs whatever a job.queued entry names, so
            # whoever reaches this Redis must be someone who may run pipelines.
            self.redis = EmbeddedRedis(
                self.home / "redis",
                port=_port(self.env, "HOOKLINE_REDIS_PORT", 6390),
                password=_stored_token(self.home / "redis.password"),
            )
            self.redis.start()
        except RedisNotFound as exc:
            raise ConfigError("REDIS_URL", str(exc)) from None
        return self.redis.url

    def spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv,
            env=child.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
            close_fds=True,
            pass_fds=(),
        )
        child.started = time.monotonic()

    @property
    def stopping(self) -> bool:
        return self.signals > 0

    def run(self) -> int:
        self.record.claim()  # before anything: a second up here is refused, not started
        try:
            return self._run()
        finally:
            self.record.remove()

    def _run(self) -> int:
        self.plan()
        secret, secret_origin = load_or_create_secret(self.env, self.home)
        if secret_value(self.env, "REDIS_URL") is None:
            _check_free(
                "127.0.0.1", _port(self.env, "HOOKLINE_REDIS_PORT", 6390), "HOOKLINE_REDIS_PORT"
            )
        redis_url = self.start_redis()
        self._hand_over_secrets(secret_values(self.env, secret, redis_url))
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.record.write(redis_url, self.env.get("HOOKLINE_PREFIX") or DEFAULT_PREFIX)
            for child in self.children:
                self.spawn(child)
            self._wait_ready()
            self._announce(redis_url, secret_origin)
            self._watch()
        finally:
            self.shutdown()
        return 0

    def _hand_over_secrets(self, values: Mapping[str, str]) -> None:
        """Each child's environment names the files of its own secrets only; then this
        process forgets the secret variables it was given and becomes undumpable."""
        files = write_secret_files(self.home, values)
        for child in self.children:
            for var in ("REDIS_URL", *child.secrets):
                if var in values:
                    child.env[var + FILE_SUFFIX] = files[var + FILE_SUFFIX]
        forget_secrets(self.env)
        keep_secrets()

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only count here: the loops act on it (printing from a handler can re-enter print).
        self.signals += 1

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(self.children)
        while pending and not self.stopping:
            for child in list(pending):
                assert child.process is not None
                if child.process.poll() is not None:
                    raise HooklineError(
                        f"{child.name} exited with status {child.process.returncode} at start"
                    )
                if _healthy(child.health_port):
                    pending.remove(child)
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise HooklineError(f"not healthy after {READY_TIMEOUT:.0f}s: {names}")
            time.sleep(0.05)

    def _announce(self, redis_url: str, secret_origin: str) -> None:
        by_name = {c.name: c for c in self.children}
        lines = [
            f"  webhook   POST http://127.0.0.1:{by_name['ingress'].health_port}/webhook",
            f"  jobs      GET  http://127.0.0.1:{by_name['status'].health_port}/jobs",
            f"  metrics   GET  http://127.0.0.1:{by_name['status'].health_port}/metrics",
            f"  redis     {redact_url(redis_url)}" + ("  (embedded, AOF on)" if self.redis else ""),
            f"            recorded in {self.record.path} for hookline info, jobs, requeue, …",
            f"  workers   {self.workers}",
            f"  secret    {secret_origin}",
        ]
        print("\n".join(lines), flush=True)
        print("hookline is ready: try `hookline webhook send --event push`", flush=True)

    def _watch(self) -> None:
        while not self.stopping:
            for child in self.children:
                self._tend(child, time.monotonic())
            time.sleep(0.2)

    def _tend(self, child: Child, now: float) -> None:
        """Restart a service that died, after its backoff (never blocking the others)."""
        if child.due is not None:
            if now >= child.due and not self.stopping:
                child.due = None
                self.spawn(child)
            return
        proc = child.process
        if proc is None or proc.poll() is None or self.stopping:
            return
        lived = now - child.started
        child.failures = 1 if lived >= STABLE_AFTER else child.failures + 1
        child.restarts += 1
        delay = restart_delay(child.failures, RESTART_BASE, RESTART_CAP)
        child.due = now + delay
        why = f"backing off, {child.failures} failures in a row" if child.failures > 1 else ""
        print(
            f"hookline: {child.name} exited with status {proc.returncode} after {lived:.1f}s; "
            f"restarting in {delay:g}s (restart {child.restarts}{', ' + why if why else ''})",
            file=sys.stderr,
            flush=True,
        )

    def shutdown(self) -> None:
        """SIGTERM every service (intake first) and wait for them, then stop Redis. A
        second signal meanwhile is forwarded (the services stop their work at once); a
        third, or the deadline, kills what is left."""
        self.signals = max(self.signals, 1)
        order = sorted(self.children, key=lambda c: c.name != "ingress")
        self._signal_all(order, signal.SIGTERM)
        if self._alive(order):
            print(
                f"hookline: stopping; a running job may take up to {self.job_deadline:g}s to "
                "finish (press Ctrl-C again to stop running jobs now)",
                flush=True,
            )
        deadline = time.monotonic() + self.job_deadline + STOP_MARGIN
        forwarded = 1
        while self._alive(order):
            if self.signals >= 3 or time.monotonic() > deadline:
                self._signal_all(order, signal.SIGKILL)
                break
            if self.signals >= 2 and forwarded < 2:
                forwarded = 2
                print(
                    "hookline: stopping running jobs now (they are handed back and run "
                    "again later; Ctrl-C once more kills every service)",
                    flush=True,
                )
                self._signal_all(order, signal.SIGTERM)
                deadline = min(deadline, time.monotonic() + self.kill_grace + STOP_MARGIN)
            time.sleep(0.05)
        for child in order:
            if child.process is not None:
                child.process.wait()
        if self.redis is not None:
            self.redis.stop()
        remove_secret_files(self.home)
        print("hookline stopped", flush=True)

    @staticmethod
    def _alive(children: list[Child]) -> list[Child]:
        return [c for c in children if c.process is not None and c.process.poll() is None]

    def _signal_all(self, children: list[Child], sig: signal.Signals) -> None:
        """``sig`` to each running service; SIGKILL goes to its whole process group."""
        for child in self._alive(children):
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(child.process.pid, sig)
                else:
                    child.process.send_signal(sig)
