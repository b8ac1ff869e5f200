"""``hookline webhook send``: sign and deliver one payload as GitHub would."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from hookline import signing
from hookline.cli.common import HOME
from hookline.errors import ConfigError
from hookline.samples import NoSample, sample_path
from hookline.service import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhook = sub.add_parser("webhook", help="deliver webhooks by hand")
    webhook_sub = webhook.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")
    send = webhook_sub.add_parser("send", help="sign and deliver one payload")
    send.add_argument("--event", default="push", help="X-GitHub-Event (default push)")
    send.add_argument(
        "--action", help="with no --file: the sample of this action (e.g. opened, closed)"
    )
    send.add_argument(
        "--file", help="payload file (default: a real GitHub payload of --event and --action)"
    )
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
        if args.file:
            path = Path(args.file)
        else:
            try:
                path = sample_path(args.event, args.action)
            except NoSample as exc:
                raise ConfigError("--event", str(exc)) from None
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
