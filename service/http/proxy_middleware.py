"""ASGI middleware for Ray Serve's HTTP proxy (installed through RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH).

When a gateway replica dies in the middle of a request, the proxy sends no response at all and uvicorn
falls back to a plain-text 500. That is a server fault the client can retry, so this middleware answers
the service's JSON 503 with Retry-After instead. Responses that were started pass through untouched.
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import REQUEST_ID_HEADER, Unavailable, request_id_of

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "service.http.proxy_middleware:middlewares"
log = logging.getLogger("ray.serve")


class UnansweredAs503:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            log.exception("request failed before any response")
        if not started:
            error = Unavailable("the replica handling this request failed; retry")
            request_id = request_id_of(scope)
            await error.response(request_id, {REQUEST_ID_HEADER: request_id})(scope, receive, send)


def middlewares() -> list[Middleware]:
    return [Middleware(UnansweredAs503)]
