"""A small Python client for hornet-serve, sync and async (no Ray needed).

from service.client import HornetClient
with HornetClient("http://127.0.0.1:8000", api_key=None) as client:   # api_key: when the server needs one
    result = client.classify("cat.jpg", model="hornet-l-gf384")
    print(result.predictions[0].label)
"""

from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path

import httpx

from service.http.schemas import ClassifyResponse, ModelList

DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "HORNET_API_KEY"
# Twice the largest side any variant resizes to (384): what a downscaled upload keeps of the photo changes the
# model's answer as little as the server's own decode paths do (docs/performance.md#decode-fidelity).
SHRINK_SHORT_SIDE = 768
# The formats the service reads (model.preprocess.FORMATS, which imports torch: this client does not); downscale
# lets no other Pillow plugin see a file.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def downscale(data: bytes, short_side: int = SHRINK_SHORT_SIDE) -> bytes:
    """A photo with its short side above `short_side`, as a JPEG (quality 90) with its short side at `short_side`
    and its EXIF orientation applied; anything else (small, not an RGB or greyscale image, not an image) unchanged.
    A 12 MP phone photo goes up as about a tenth of its bytes and costs the server a tenth of its decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.mode not in ("RGB", "L") or min(image.size) <= short_side:
                return data
            scale = short_side / min(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image.draft(image.mode, size)  # a JPEG decodes at the smallest DCT scale still at least this size
            upright = ImageOps.exif_transpose(image)
            shrunk = upright.resize(size if upright.size[0] == image.size[0] else size[::-1], Image.LANCZOS)
            buffer = io.BytesIO()
            shrunk.save(buffer, "JPEG", quality=90)
    except (UnidentifiedImageError, OSError, ValueError):
        return data  # the server answers for what it cannot read
    return buffer.getvalue() if buffer.tell() < len(data) else data


def _auth_headers(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer <key>` for the given key, else $HORNET_API_KEY, else none."""
    key = api_key or os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


class HornetError(Exception):
    """An error answer of the service: its HTTP status and the JSON error body."""

    def __init__(self, status: int, type_: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {type_}: {message}")
        self.status, self.type, self.message, self.request_id = status, type_, message, request_id


def _image(image: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(image, bytes):
        return image, "application/octet-stream"
    path = Path(image)
    return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _request_args(image: str | Path | bytes, model: str | None, top_k: int, shrink: bool) -> dict:
    data, content_type = _image(image)
    if shrink and (smaller := downscale(data)) is not data:
        data, content_type = smaller, "image/jpeg"
    params = {"top_k": top_k, **({"model": model} if model else {})}
    return {"url": "/v1/classify", "params": params, "content": data, "headers": {"Content-Type": content_type}}


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code != 200:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"type": "http_error", "message": response.text[:200], "request_id": None}
        raise HornetError(response.status_code, error["type"], error["message"], error.get("request_id"))


def _parse(response: httpx.Response) -> ClassifyResponse:
    _raise_for_error(response)
    return ClassifyResponse.model_validate(response.json())


def _models(response: httpx.Response) -> ModelList:
    _raise_for_error(response)
    return ModelList.model_validate(response.json())


class HornetClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60, api_key: str | None = None) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=_auth_headers(api_key))

    def classify(
        self, image: str | Path | bytes, model: str | None = None, top_k: int = 5, shrink: bool = False
    ) -> ClassifyResponse:
        """`shrink`: send a big photo downscaled (`downscale`), as hornet-classify and the page do."""
        return _parse(self._http.post(**_request_args(image, model, top_k, shrink)))

    def models(self) -> ModelList:
        return _models(self._http.get("/v1/models"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HornetClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncHornetClient:
    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 60, max_connections: int = 16, api_key: str | None = None
    ) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits, headers=_auth_headers(api_key))

    async def classify(
        self, image: str | Path | bytes, model: str | None = None, top_k: int = 5, shrink: bool = False
    ) -> ClassifyResponse:
        return _parse(await self._http.post(**_request_args(image, model, top_k, shrink)))

    async def models(self) -> ModelList:
        return _models(await self._http.get("/v1/models"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHornetClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
