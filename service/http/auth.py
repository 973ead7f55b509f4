"""Optional API keys: `Authorization: Bearer <key>`, checked in the gateway, with a token bucket per key.

The keys file (a plain file, or a Kubernetes Secret mounted as one) holds one key per line,
`<key id> <sha256 hex of the key>`, and `#` comments: the keys themselves are stored nowhere. A presented
key is hashed and compared with every stored hash in constant time; only its id is ever logged or used as a
metric tag. The file is re-read when it changes (a rotated Secret), checked at most every 10 seconds.

    python -m service.http.auth new alice     # prints a new key once, and the line for the keys file
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import math
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KEY_PREFIX = "hsk_"
RECHECK_S = 10.0
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message names the file and line, never a line's content."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(text: str, source: str) -> dict[str, bytes]:
    """`<key id> <sha256 hex>` lines -> {key id: digest}."""
    hashes: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not _KEY_ID.fullmatch(parts[0]) or not _SHA256_HEX.fullmatch(parts[1].lower()):
            raise KeyFileError(f"{source} line {number}: expected '<key id> <sha256 hex of the key>'")
        if parts[0] in hashes:
            raise KeyFileError(f"{source} line {number}: key id {parts[0]!r} appears twice")
        hashes[parts[0]] = bytes.fromhex(parts[1])
    if not hashes:
        raise KeyFileError(f"{source} has no keys: every request would be refused")
    return hashes


@dataclass
class KeyStore:
    """The keys file, re-read when it changes."""

    path: Path
    clock: Callable[[], float] = time.monotonic
    _hashes: dict[str, bytes] = field(default_factory=dict)
    _stamp: tuple[int, int, int] | None = None
    _checked: float = -math.inf

    def __post_init__(self) -> None:
        self._refresh()

    def identify(self, key: str) -> str | None:
        """The id of the key, or None. Every stored hash is compared, in constant time each."""
        if self.clock() - self._checked >= RECHECK_S:
            self._refresh()
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for key_id, stored in self._hashes.items():
            if hmac.compare_digest(digest, stored):
                found = key_id
        return found

    def _refresh(self) -> None:
        self._checked = self.clock()
        st = self.path.stat()  # follows the symlinks a mounted Secret swaps on update
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._hashes = parse_keys(self.path.read_text(), str(self.path))
            self._stamp = stamp


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


@dataclass
class TokenBuckets:
    """A token bucket per key id: `burst` tokens, refilled at `rate_per_s`; a request takes one."""

    rate_per_s: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)  # key id -> (tokens, last refill)

    def take(self, key_id: str) -> float:
        """0 when the request may go ahead, else the seconds until the key has a token again."""
        now = self.clock()
        tokens, last = self._state.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens >= 1:
            self._state[key_id] = (tokens - 1, now)
            return 0.0
        self._state[key_id] = (tokens, now)
        return (1 - tokens) / self.rate_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.http.auth", description="Make API keys for hornet-serve.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="print a new key and its line for the keys file")
    new.add_argument("key_id", help="a name for the key (letters, digits, . _ -), used in logs and metrics")
    commands.add_parser("hash", help="read a key on stdin, print its sha256 for the keys file")
    args = parser.parse_args(argv)
    if args.command == "hash":
        print(hash_key(sys.stdin.readline().strip()))
        return 0
    if not _KEY_ID.fullmatch(args.key_id):
        parser.error(f"key id must match {_KEY_ID.pattern}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    print(f"key (give it to the client; it is stored nowhere): {key}", file=sys.stderr)
    print(f"{args.key_id} {hash_key(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
