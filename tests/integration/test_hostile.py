"""A model server is attacked by its inputs: 30+ kinds of bad request, each with its documented 4xx and
JSON error, then a good request still answered and no replica restarted. Also: undocumented formats,
decompression bombs under the decode budget, oversized headers and a client trickling its body."""

import contextlib
import io
import json
import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from service.daemon.local import serve_actors
from tests.support.helpers import api_error
from tests.support.images import encode, photo, png_header, psd, webp_bomb

from .live import TEST_SETTINGS

JPEG = encode(photo(320, 240, seed=11), "JPEG", quality=90)
PNG = encode(photo(320, 240, seed=12), "PNG")


def _animated(fmt: str) -> bytes:
    frames = [photo(64, 64, seed=s) for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(photo(300, 200), "JPEG", exif=exif)


def _huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 KB EXIF block
    return encode(photo(200, 150), "JPEG", exif=exif)


def _palette_transparent() -> bytes:
    image = photo(64, 64).convert("P", palette=Image.ADAPTIVE, colors=8)
    return encode(image, "PNG", transparency=0)


RAW = {"Content-Type": "image/jpeg"}
# The error type of each status a bad upload gets from /v1/classify (service/http/errors.py).
ERROR_TYPES = {400: "invalid_image", 404: "unknown_model", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_parameter"}  # fmt: skip
# (kind, query, body, headers, expected status). Accepted oddities answer 200: they are real uploads.
CASES = [
    ("empty body", "", b"", RAW, 400),
    ("text as image", "", b"hello, I am text", RAW, 400),
    ("html as image", "", b"<html><body>hi</body></html>", {"Content-Type": "image/png"}, 400),
    ("truncated jpeg", "", JPEG[: len(JPEG) // 3], RAW, 400),
    ("truncated png", "", PNG[: len(PNG) // 2], {"Content-Type": "image/png"}, 400),
    ("corrupt jpeg header", "", b"\xff\xd8\xff\xe0" + b"\x00" * 200, RAW, 400),
    ("corrupt png header", "", b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, {"Content-Type": "image/png"}, 400),
    ("random bytes", "", np.random.default_rng(0).bytes(5000), RAW, 400),
    ("zero-size png", "", png_header(0, 0), {"Content-Type": "image/png"}, 400),
    ("decompression bomb", "", png_header(30000, 30000), {"Content-Type": "image/png"}, 413),
    ("bomb beyond pillow's guard", "", png_header(100000, 100000), {"Content-Type": "image/png"}, 413),
    ("1x1 image", "", encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), {"Content-Type": "image/png"}, 200),
    ("1x10000 strip", "", encode(photo(1, 10000), "PNG"), {"Content-Type": "image/png"}, 200),
    ("10000x1 strip", "", encode(photo(10000, 1), "PNG"), {"Content-Type": "image/png"}, 200),
    ("animated gif", "", _animated("GIF"), {"Content-Type": "image/gif"}, 200),
    ("animated webp", "", _animated("WEBP"), {"Content-Type": "image/webp"}, 200),
    (
        "16-bit grayscale png",
        "",
        encode(Image.fromarray(np.full((32, 32), 40000, np.uint16)), "PNG"),
        {"Content-Type": "image/png"},
        200,
    ),
    ("cmyk jpeg", "", encode(Image.new("CMYK", (64, 64), (0, 128, 255, 0)), "JPEG"), RAW, 200),
    ("palette with transparency", "", _palette_transparent(), {"Content-Type": "image/png"}, 200),
    ("exif-rotated jpeg", "", _exif_rotated(), RAW, 200),
    ("huge exif block", "", _huge_exif(), RAW, 200),
    ("wrong content type", "", JPEG, {"Content-Type": "application/json"}, 415),
    ("no content type", "", JPEG, {}, 415),
    ("video content type", "", JPEG, {"Content-Type": "video/mp4"}, 415),
    ("unknown model", "model=vit-b16", JPEG, RAW, 404),
    ("a variant this service does not run", "model=hornet-b", JPEG, RAW, 404),
    ("path-like model", "model=../../../../etc/passwd", JPEG, RAW, 404),
    ("url-like model", "model=http://127.0.0.1:1/x.pth", JPEG, RAW, 404),
    ("model with NUL", "model=hornet-t%00", JPEG, RAW, 404),
    ("very long model name", "model=" + "a" * 5000, JPEG, RAW, 404),
    ("top_k=0", "top_k=0", JPEG, RAW, 422),
    ("top_k=-1", "top_k=-1", JPEG, RAW, 422),
    ("top_k=10^9", "top_k=1000000000", JPEG, RAW, 422),
    ("top_k=text", "top_k=five", JPEG, RAW, 422),
    ("top_k=float", "top_k=2.5", JPEG, RAW, 422),
    ("top_k huge int", "top_k=" + "9" * 400, JPEG, RAW, 422),
    ("very long query string", "x=" + "y" * 6000, JPEG, RAW, 200),
    ("oversized declared body", "", b"x" * 6_000_100, RAW, 413),
]


def _multipart(body: bytes, boundary: str = "B") -> tuple[bytes, dict]:
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# (kind, body, headers, expected status, what the error message says)
MULTIPART_CASES = [
    ("multipart without a file", *_multipart(b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--B--\r\n'),
     422, "no 'file' field"),
    ("multipart wrong field name", *_multipart(
        b'--B\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n' + JPEG + b"\r\n--B--\r\n"), 422,
     "send the image in the field 'file'"),
    ("multipart two files", *_multipart(
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + JPEG + b"\r\n"
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="b.jpg"\r\n\r\n' + JPEG + b"\r\n--B--\r\n"), 422,
     "exactly one file"),
    ("multipart empty file", *_multipart(
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\r\n--B--\r\n'), 400,
     "the image is empty"),
    ("multipart garbage", *_multipart(b"--B\r\nthis is not multipart"), 400, "malformed multipart body"),
    ("multipart no boundary", JPEG, {"Content-Type": "multipart/form-data"}, 400, "malformed multipart body"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "query", "body", "headers", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_status_and_a_json_error(service, replicas_at_start, kind, query, body, headers, status):
    r = service.client.post(f"/v1/classify?{query}", content=body, headers=headers)
    if status == 200:
        assert r.status_code == 200, f"{kind}: {r.status_code} {r.text[:300]}"
        assert len(r.json()["predictions"]) == 5
    else:
        api_error(r, status, ERROR_TYPES[status])


@pytest.mark.parametrize(
    ("kind", "body", "headers", "status", "message"), MULTIPART_CASES, ids=[c[0] for c in MULTIPART_CASES]
)
def test_bad_multipart_gets_its_status_and_says_what_is_wrong(
    service, replicas_at_start, kind, body, headers, status, message
):
    r = service.client.post("/v1/classify", content=body, headers=headers)
    assert message in api_error(r, status, ERROR_TYPES[status])["message"], kind


def test_a_streamed_body_over_the_limit_is_cut_off(service, replicas_at_start):
    def chunks():  # 12.8 MB with no Content-Length: the gateway must count and stop at 6 MB
        for _ in range(200):
            yield b"\xff" * 64_000

    r = service.client.post("/v1/classify", content=chunks(), headers=RAW)
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


def test_after_the_whole_corpus_the_service_answers_and_no_replica_restarted(service, replicas_at_start):
    r = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=RAW)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 5
    assert serve_actors("SERVE_REPLICA") == replicas_at_start


def test_only_whitelisted_names_reach_the_model_registry(service):
    with httpx.Client(base_url=service.base_url) as client:
        for name in ("hornet-t/../hornet-b", "HORNET-T", "hornet-t ", "file:///etc/passwd"):
            assert client.get(f"/v1/models/{name}").status_code == 404


UNDOCUMENTED = {
    "EPS": encode(photo(32, 32), "EPS"),
    "PDF": encode(photo(32, 32), "PDF"),
    "ICO": encode(photo(32, 32), "ICO"),
    "PSD": psd(),
    "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>',
}


@pytest.mark.parametrize("fmt", UNDOCUMENTED)
def test_an_undocumented_format_is_400_naming_the_formats_read(service, replicas_at_start, fmt):
    r = service.client.post("/v1/classify", content=UNDOCUMENTED[fmt], headers={"Content-Type": "image/x-anything"})
    assert r.status_code == 400, r.text
    assert "not a format this service reads (JPEG, PNG, WEBP, GIF, BMP, TIFF)" in r.json()["error"]["message"]


def test_a_tiny_webp_bomb_is_413_before_decoding(service, replicas_at_start):
    bomb = webp_bomb(4000)  # 16 MP in a few KB
    started = time.perf_counter()
    r = service.client.post("/v1/classify", content=bomb, headers={"Content-Type": "image/webp"})
    assert r.status_code == 413 and "budget for WEBP" in r.json()["error"]["message"], r.text
    assert time.perf_counter() - started < 2  # decoding it would take about 0.7 s of CPU; refusing it, none


def test_headers_over_the_limit_get_431_json(service):
    limit = TEST_SETTINGS["limits"]["max_header_bytes"]
    r = service.client.post("/v1/classify", content=JPEG, headers={**RAW, "X-Padding": "a" * (limit + 2000)})
    assert r.status_code == 431, r.text
    assert r.json()["error"]["type"] == "request_header_fields_too_large"


def test_a_200_kb_header_is_refused_by_whatever_ingress_runs(service):
    started = time.perf_counter()
    r = service.client.post("/v1/classify", content=JPEG, headers={**RAW, "X-Padding": "a" * 200_000})
    assert r.status_code in (400, 431), r.text[:300]
    assert time.perf_counter() - started < 10
    assert service.client.get("/healthz").status_code == 200


def _trickle(base_url: str, seconds: float) -> tuple[int | None, dict, float]:
    """POST a 1000-byte body one byte per second; return the status and JSON body of the answer, if one came
    within `seconds`, and when it came."""
    url = urlsplit(base_url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        head = (f"POST /v1/classify HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 1000\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())
        answer = b""
        while time.monotonic() - started < seconds:
            with contextlib.suppress(OSError):  # the server answered and closed: read what came
                sock.send(b"\xff")
            if select.select([sock], [], [], 1.0)[0]:
                chunk = sock.recv(65536)
                answer += chunk
                head_end = answer.find(b"\r\n\r\n")
                if not chunk or (head_end > 0 and len(answer) >= head_end + 4 + _content_length(answer[:head_end])):
                    break
    elapsed = time.monotonic() - started
    if not answer:
        return None, {}, elapsed
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}"), elapsed


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_a_trickled_body_gets_408_without_holding_a_decode_thread(service):
    """Three clients trickle their bodies (more than the two decode threads); meanwhile a normal request is
    answered at once, and each trickler gets 408 JSON when the body read time limit passes."""
    limit_s = TEST_SETTINGS["timeouts"]["body_read_s"]
    results: list[tuple[int | None, dict, float]] = []
    tricklers = [threading.Thread(target=lambda: results.append(_trickle(service.base_url, limit_s + 10)))
                 for _ in range(3)]  # fmt: skip
    for t in tricklers:
        t.start()
    time.sleep(1)
    started = time.perf_counter()
    r = service.client.post("/v1/classify?model=hornet-t", content=JPEG, headers=RAW)
    assert r.status_code == 200 and time.perf_counter() - started < limit_s - 1.5
    for t in tricklers:
        t.join(timeout=limit_s + 20)
    assert len(results) == 3
    for status, body, elapsed in results:
        assert status == 408 and body["error"]["type"] == "request_timeout", (status, body)
        assert limit_s - 0.5 < elapsed < limit_s + 4
