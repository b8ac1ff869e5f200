"""Container health check: GET /readyz (or the path given, e.g. ``/livez``) of the
service this image runs (exit 0 or 1).

``/readyz`` answers 200 while the service can do its work (Redis reachable and safe,
its loop running; the ingress while it can take webhooks, spooling if need be),
``/livez`` while the process serves at all. The service is ``HOOKLINE_SERVICE``; its
port is the service's own port variable (``HOOKLINE_INGRESS_PORT`` ...) or its default,
exactly as the service reads them. Standard library only, so the image needs no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PORTS = {
    "ingress": ("HOOKLINE_INGRESS_PORT", 5001),
    "status": ("HOOKLINE_STATUS_PORT", 5002),
    "dispatcher": ("HOOKLINE_DISPATCHER_PORT", 9102),
    "worker": ("HOOKLINE_WORKER_PORT", 9103),
}


PATHS = ("/readyz", "/livez", "/health")


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/readyz"
    if path not in PATHS:
        print(f"healthcheck: {path!r} is not one of {', '.join(PATHS)}")
        return 1
    service = os.environ.get("HOOKLINE_SERVICE", "")
    if service not in PORTS:
        print(f"healthcheck: HOOKLINE_SERVICE={service!r} is not a hookline service")
        return 1
    variable, default = PORTS[service]
    port = os.environ.get(variable) or str(default)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {service} on port {port}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
