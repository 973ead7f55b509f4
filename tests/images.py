"""Images the tests make themselves: the load-test corpus generator, re-used, and hostile files."""

from __future__ import annotations

import struct
import zlib

from PIL import Image

from loadtest.corpus import encode, photo

__all__ = ["encode", "photo", "png_header", "psd", "webp_bomb"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb when large, with no pixel
    data worth the name (a pixel limit must refuse it from the header)."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def psd(width: int = 8, height: int = 8) -> bytes:
    """A minimal RGB Photoshop file (Pillow reads PSD but cannot write it)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * width * height)


def webp_bomb(side: int) -> bytes:
    """A lossless WebP of one colour: side x side pixels in a few hundred bytes to a few KB."""
    return encode(Image.new("RGB", (side, side), (90, 90, 90)), "WEBP", lossless=True)
