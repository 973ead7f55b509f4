"""The HTTP errors of docs/http.md#errors, each a status and a JSON body `{"error": {type, message, request_id}}`."""

from __future__ import annotations


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


class InvalidImage(ApiError):
    status, type = 400, "invalid_image"


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

    def __init__(self, message: str, retry_after_s: int) -> None:
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
