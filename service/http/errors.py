"""The HTTP errors of docs/http.md#errors, each a status and a JSON body `{"error": {type, message, request_id}}`.

Every JSON error the service sends is one of these: the gateway's answers, the proxy middleware's and the error
files of the HAProxy wrapper. This module imports nothing outside the standard library: the config, `hornet-haproxy` (before haproxy starts) and the
GPU check import it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

REQUEST_ID_HEADER = "x-request-id"
RETRY_AFTER_S = 1  # the default of timeouts.retry_after_s


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's X-Request-ID from its ASGI headers (Serve's proxy and HAProxy set one when the client sent
    none), else a new one."""
    found = next((value for name, value in headers if name.lower() == REQUEST_ID_HEADER.encode()), b"")
    return found.decode("latin-1") or uuid.uuid4().hex


def request_id_of(scope: Mapping) -> str:
    return request_id(scope.get("headers", ()))


class ApiError(Exception):
    status = 400
    type = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if status is not None:  # for statuses raised by the framework itself (e.g. 404 route, 405 method)
            self.status = status

    def body(self, request_id: str) -> dict:
        return {"error": {"type": self.type, "message": self.message, "request_id": request_id}}

    def response(self, request_id: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
        from starlette.responses import JSONResponse  # here: the config and hornet-haproxy import this module

        return JSONResponse(self.body(request_id), status_code=self.status, headers={**self.headers, **(headers or {})})

    def http_message(self, request_id: str = "") -> bytes:
        """The whole HTTP/1.1 response, for answers written outside any framework (HAProxy's error files)."""
        body = json.dumps(self.body(request_id)).encode()
        head = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}", "Content-Type: application/json",
                "Cache-Control: no-cache", "Connection: close", f"Content-Length: {len(body)}",
                *(f"{name}: {value}" for name, value in self.headers.items())]  # fmt: skip
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class InvalidImage(ApiError):
    status, type = 400, "invalid_image"


class InvalidRequest(ApiError):
    """A request the protocol does not allow: an OIP infer request's structure, datatypes, shapes or sizes."""

    status, type = 400, "invalid_request"


class UnknownModel(ApiError):
    status, type = 404, "unknown_model"


class Unauthorized(ApiError):
    """No valid API key; the challenge tells the client which scheme to use."""

    status, type = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="hornet-serve"'})


class NotFound(ApiError):
    status, type = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, type = 405, "method_not_allowed"


class RequestTimeout(ApiError):
    """The request body did not arrive in time (a slow or stalled client)."""

    status, type = 408, "request_timeout"


class PayloadTooLarge(ApiError):
    status, type = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, type = 415, "unsupported_media_type"


class InvalidParameter(ApiError):
    status, type = 422, "invalid_parameter"


class RetryLater(ApiError):
    """An error the client should retry after `Retry-After` seconds."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class RateLimited(RetryLater):
    """The API key's token bucket is empty."""

    status, type = 429, "rate_limited"


class HeadersTooLarge(ApiError):
    status, type = 431, "request_header_fields_too_large"


class Unavailable(RetryLater):
    """Overloaded or not ready."""

    status, type = 503, "unavailable"


class Timeout(ApiError):
    status, type = 504, "timeout"


class Internal(ApiError):
    """A fault of the server (never of the client's input)."""

    status, type = 500, "internal"
