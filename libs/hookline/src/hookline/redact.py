"""One way to show a URL to a person: its password (userinfo or query) replaced by ``***``.

Everything that prints or logs a Redis URL goes through :func:`redact_url`; error text
that may quote the URL goes through :func:`redact_text`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

MASK = "***"
# Query parameters redis-py reads a credential from.
_SECRET_PARAMS = ("password",)


def redact_url(url: str) -> str:
    """``url`` with any password masked; the user name, host, port and db stay readable.
    A lone userinfo (``redis://secret@host``) is masked too: it may be a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, tail = _split(rest)
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    return f"{scheme}://{authority}{_redact_query(tail)}"


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, say) with every password ``url`` carries masked."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _split(rest: str) -> tuple[str, str]:
    """The authority (``user:pw@host:port``) and what follows it (path, query). A unix
    URL's path follows the ``@`` directly (``unix://:pw@/run/redis.sock``), so the
    authority ends at the first ``/`` or ``?`` after the last ``@``."""
    query = rest.find("?")
    at = rest.rfind("@", 0, query if query >= 0 else len(rest))
    start = at + 1
    cuts = [i for i in (rest.find("/", start), rest.find("?", start)) if i >= 0]
    end = min(cuts) if cuts else len(rest)
    return rest[:end], rest[end:]


def _redact_query(tail: str) -> str:
    path, question, query = tail.partition("?")
    if not question:
        return tail
    parts = []
    for item in query.split("&"):
        name, equals, _ = item.partition("=")
        parts.append(f"{name}={MASK}" if equals and name.lower() in _SECRET_PARAMS else item)
    return f"{path}?{'&'.join(parts)}"


def _secrets(url: str) -> set[str]:
    _, sep, rest = url.partition("://")
    if not sep:
        return set()
    found = set()
    authority, tail = _split(rest)
    userinfo, at, _ = authority.rpartition("@")
    if at:
        _, colon, password = userinfo.partition(":")
        found.add(password if colon else userinfo)
    _, _, query = tail.partition("?")
    found.update(v for k, v in parse_qsl(query) if k.lower() in _SECRET_PARAMS)
    found |= {unquote(s) for s in found}
    return {s for s in found if s}
