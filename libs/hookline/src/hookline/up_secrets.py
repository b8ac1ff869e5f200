"""How ``hookline up`` hands each service its own secrets: as files in
``.hookline/secrets/`` (folder 0700, files 0600) that ``<VAR>_FILE`` names, never as
values in a child's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hookline.config import FILE_SUFFIX, SECRET_VARIABLES, secret_value

# The secrets each service needs besides its Redis URL (which may hold a password);
# the dispatcher and the workers (whose pipelines run code from anyone's push) get none.
SECRETS_OF = {
    "ingress": ("GITHUB_WEBHOOK_SECRET",),
    "status": ("HOOKLINE_ADMIN_TOKEN", "HOOKLINE_READ_TOKEN"),
}
SECRETS_DIR = "secrets"


def write_secret_files(home: Path, values: Mapping[str, str]) -> dict[str, str]:
    """Each secret in its own file under ``home/secrets`` (folder 0700, files 0600,
    replaced atomically); ``<VAR>_FILE`` -> path, for the children's environments."""
    folder = home / SECRETS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    paths: dict[str, str] = {}
    for var, value in values.items():
        path = folder / var
        partial = folder / f".{var}.{os.getpid()}"
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        partial.replace(path)
        paths[var + FILE_SUFFIX] = str(path.absolute())
    return paths


def remove_secret_files(home: Path) -> None:
    for var in SECRET_VARIABLES:
        (home / SECRETS_DIR / var).unlink(missing_ok=True)


def secret_values(env: Mapping[str, str], webhook_secret: str, redis_url: str) -> dict[str, str]:
    """Every secret ``up`` hands over: the given ones (values or ``_FILE``s), the
    webhook secret (maybe generated) and the Redis URL."""
    values = {var: v for var in SECRET_VARIABLES if (v := secret_value(env, var))}
    values["GITHUB_WEBHOOK_SECRET"] = webhook_secret
    values["REDIS_URL"] = redis_url
    return values
