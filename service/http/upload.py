"""Turn an upload into image bytes: raw body (image/*, application/octet-stream) or multipart `file`,
reading no more than the body limit."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from service.http.errors import InvalidImage, InvalidParameter, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

RAW_TYPES = ("application/octet-stream",)


async def read_limited(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, cut off with 413 as soon as it passes `limit` bytes (a declared Content-Length first), and
    with 408 when it has not all arrived within `timeout_s` (a client trickling its body). Reading waits on
    the event loop, so a slow client holds no decode thread."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes, the limit is {limit}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks, size = [], 0
    stream = request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(deadline - loop.time(), 0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {timeout_s:g} s ({size} bytes came)"
            ) from None
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _from_multipart(request: Request, body: bytes) -> bytes:
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except HTTPException as exc:  # in an app, Starlette reports a MultiPartException as a 400 HTTPException
        raise InvalidImage(f"malformed multipart body: {exc.detail}") from exc
    files = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
    wrong = sorted({key for key, _ in files if key != "file"})
    if wrong:
        raise InvalidParameter(f"unexpected file field(s) {wrong}: send the image in the field 'file'")
    if not files:
        raise InvalidParameter("multipart body has no 'file' field with an image")
    if len(files) > 1:
        raise InvalidParameter(f"send exactly one file per request, got {len(files)}")
    return await files[0][1].read()


async def image_bytes(request: Request, limit: int, timeout_s: float) -> bytes:
    media_type = _media_type(request)
    is_raw = media_type.startswith("image/") or media_type in RAW_TYPES
    if not is_raw and media_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type or '(none)'!r}: send image/*, application/octet-stream "
            "or multipart/form-data with a 'file' field"
        )
    body = await read_limited(request, limit, timeout_s)
    return body if is_raw else await _from_multipart(request, body)
