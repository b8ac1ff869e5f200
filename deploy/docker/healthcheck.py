"""Container health check: GET /health of the service this image runs (exit 0 or 1).

The service is ``HOOKLINE_SERVICE``; its port is the service's own port variable
(``HOOKLINE_INGRESS_PORT`` ...) or its default, exactly as the service reads them.
Standard library only, so the image needs no curl.
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


def main() -> int:
    service = os.environ.get("HOOKLINE_SERVICE", "")
    if service not in PORTS:
        print(f"healthcheck: HOOKLINE_SERVICE={service!r} is not a hookline service")
        return 1
    variable, default = PORTS[service]
    port = os.environ.get(variable) or str(default)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {service} on port {port}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
