"""ASGI middleware for Ray Serve's HTTP proxy (installed through RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH).

When a gateway replica dies in the middle of a request, the proxy sends no response at all and uvicorn
falls back to a plain-text 500. That is a server fault the client can retry, so this middleware answers
the service's JSON 503 with Retry-After instead. Responses that were started pass through untouched.
"""

from __future__ import annotations

import json
import logging

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "service.proxy_middleware:middlewares"
RETRY_AFTER_S = 1
log = logging.getLogger("ray.serve")


def _request_id(scope: Scope) -> str:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-request-id"), "")


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
            await self._unavailable(scope, send)

    @staticmethod
    async def _unavailable(scope: Scope, send: Send) -> None:
        request_id = _request_id(scope)
        body = json.dumps({"error": {
            "type": "unavailable",
            "message": "the replica handling this request failed; retry",
            "request_id": request_id,
        }}).encode()  # fmt: skip
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", str(RETRY_AFTER_S).encode())]  # fmt: skip
        if request_id:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def middlewares() -> list[Middleware]:
    return [Middleware(UnansweredAs503)]
