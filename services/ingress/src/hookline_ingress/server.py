"""The ingress's HTTP server below the app: a cap on open connections, the header
deadline, and aiohttp's own refusals (a request its parser cannot take) in the JSON
error shape, logged without the offending bytes, which may hold a token."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from hookline.logs import get_logger
from hookline.web import json_error

_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)
_BUSY_BODY = (
    b'{"error":"too_many_connections","detail":"the ingress holds as many connections as '
    b'HOOKLINE_INGRESS_MAX_CONNECTIONS allows; retry shortly"}'
)
BUSY_REPLY = _REPLY % (len(_BUSY_BODY), _BUSY_BODY)
# How long a refused connection's request is read and discarded before it is closed.
REFUSED_LINGER = 1.0


class Connections:
    """The open connections of one server, capped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


def refusal_of(exc: BaseException | None, status: int) -> tuple[int, str, str]:
    """Status, error and detail for a request aiohttp refused before the app saw it; the
    detail is fixed text, never the parser's message (which quotes the request)."""
    if isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower():
        return 431, "headers_too_large", "a header line or the number of headers is too large"
    if isinstance(exc, BadHttpMessage):
        return 400, "bad_request", "the request is not valid HTTP/1.1"
    if status == 500:
        return 500, "internal_error", "the request could not be handled"
    return status, "http_error", "the request was refused"


class GuardedHandler(RequestHandler):
    """aiohttp's protocol, plus the connection cap and JSON refusals."""

    __slots__ = ("_connections", "_counted", "_refused")

    def __init__(self, manager: web.Server, *, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._connections = connections
        self._counted = False
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connections = self._connections
        if connections.open >= connections.limit:
            tcp = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
            # Answer, stop sending, and discard what the client sends until it closes
            # (or for a moment): closing at once, with its request unread, would reset
            # the connection before the client reads the answer.
            self._refused = True
            self._manager = None  # never served: connection_lost has nothing to undo
            tcp.write(BUSY_REPLY)
            tcp.write_eof()
            self._loop.call_later(REFUSED_LINGER, tcp.close)
            return
        connections.open += 1
        self._counted = True
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._connections.open -= 1
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        status, error, detail = refusal_of(exc, status)
        log = get_logger()
        if status == 500:
            log.error("request_failed", error=type(exc).__name__, exc_info=exc)
        else:  # the exception's text quotes the request's bytes: only its kind is logged
            log.warning("request_refused", status=status, error=type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: the connection is closed instead")
        response = json_error(status, error, detail)
        response.force_close()
        return response


class GuardedServer(web.Server):
    def __init__(self, *args: Any, connections: Connections, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = connections

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, connections=self.guard, **self._kwargs)


class IngressRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`GuardedServer`."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.connections = Connections(max_connections)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The same server aiohttp built (handler, request factory, handler arguments),
        # only making GuardedHandlers.
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            connections=self.connections,
            **plain._kwargs,
        )
