"""The ``hookline`` command: every service, ``up``, and the operator tools.

Services are imported only when their subcommand runs, so the library never depends
on a service being installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hookline import signing
from hookline.errors import ConfigError, HooklineError
from hookline.service import EXIT_CONFIG, fail

HOME = Path(".hookline")
SERVICES = ("ingress", "dispatcher", "status")


def _run_service(name: str) -> int:
    module = importlib.import_module(f"hookline_{name}.__main__")
    return int(module.main())


def cmd_up(args: argparse.Namespace) -> int:
    from hookline.supervisor import Supervisor

    try:
        return Supervisor(os.environ, args.workers, HOME, worker_concurrency=args.concurrency).run()
    except ConfigError as exc:
        return fail(str(exc))
    except HooklineError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return 1


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="worker name (default: host-pid)")
    parser.add_argument("--queues", help="comma-separated queues, highest priority first")
    parser.add_argument("--concurrency", type=int, help="jobs run at once (default 1)")
    parser.add_argument(
        "--burst", action="store_true", default=None, help="exit once every listed queue is empty"
    )
    parser.add_argument("--port", type=int, help="port of /health and /metrics (0: none)")
    parser.add_argument("--shutdown-timeout", help="how long SIGTERM waits for running jobs")


def cmd_worker(args: argparse.Namespace) -> int:
    from hookline_worker.__main__ import run

    return run(args)


def _secret(args: argparse.Namespace) -> str:
    if args.secret:
        return str(args.secret)
    env = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if env:
        return env.split(",")[0].strip()
    stored = HOME / "secret"
    if stored.exists():
        return stored.read_text().strip()
    raise ConfigError(
        "GITHUB_WEBHOOK_SECRET", "not set and no .hookline/secret here; pass --secret"
    )


def cmd_webhook_send(args: argparse.Namespace) -> int:
    """Sign and deliver one payload as GitHub would; print the status and the reply."""
    try:
        secret = _secret(args)
        path = Path(args.file) if args.file else Path(__file__).parent / "data" / "push.json"
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ConfigError("--file", f"cannot read {path}: {exc.strerror}") from None
    except ConfigError as exc:
        return fail(str(exc))
    delivery = args.delivery or str(uuid.uuid4())
    request = urllib.request.Request(
        args.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/hookline-cli",
            "X-GitHub-Event": args.event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signing.sign(secret, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            status, text = reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"hookline: error: cannot reach {args.url}: {getattr(exc, 'reason', exc)}",
            file=sys.stderr,
        )
        return 1
    print(f"HTTP {status}")
    try:
        print(json.dumps(json.loads(text), indent=2))
    except ValueError:
        print(text)
    return 0 if status < 400 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="GitHub webhooks in, pipeline jobs out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument(
        "--concurrency", type=int, default=None, help="jobs each worker runs at once (default 1)"
    )
    up.set_defaults(func=cmd_up)

    for name in SERVICES:
        service = sub.add_parser(name, help=f"run the {name} service")
        service.set_defaults(func=lambda _a, n=name: _run_service(n))

    worker = sub.add_parser("worker", help="run a worker")
    add_worker_arguments(worker)
    worker.set_defaults(func=cmd_worker)

    webhook = sub.add_parser("webhook", help="deliver webhooks by hand")
    webhook_sub = webhook.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")
    send = webhook_sub.add_parser("send", help="sign and deliver one payload")
    send.add_argument("--event", default="push", help="X-GitHub-Event (default push)")
    send.add_argument("--file", help="payload file (default: a real push payload)")
    send.add_argument(
        "--url",
        default=os.environ.get(
            "HOOKLINE_WEBHOOK_URL",
            f"http://127.0.0.1:{os.environ.get('HOOKLINE_INGRESS_PORT', '5001')}/webhook",
        ),
    )
    send.add_argument(
        "--secret", help="signing secret (default: GITHUB_WEBHOOK_SECRET or .hookline/secret)"
    )
    send.add_argument("--delivery", help="X-GitHub-Delivery (default: a fresh UUID)")
    send.set_defaults(func=cmd_webhook_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"hookline: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
