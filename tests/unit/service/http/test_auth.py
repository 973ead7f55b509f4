"""API keys: the keys file, the constant-time lookup, rotation, the token buckets and the key tool."""

from __future__ import annotations

import os

import pytest

from service.config import Settings
from service.http.auth import KeyFileError, KeyStore, TokenBuckets, bearer_token, hash_key, main, parse_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_keys_file_holds_hashes_and_comments():
    text = f"# team keys\nalice {hash_key('k-alice')}\n\nbob   {hash_key('k-bob').upper()}  # rotated\n"
    assert set(parse_keys(text, "keys")) == {"alice", "bob"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice k-alice-in-clear", "keys line 1: expected"),
        (f"alice {hash_key('a')}\nalice {hash_key('b')}", "line 2: key id 'alice' appears twice"),
        (f"al/ice {hash_key('a')}", "line 1: expected"),
        ("# nothing\n", "has no keys"),
    ],
)
def test_a_bad_keys_file_is_refused_without_echoing_its_content(text, problem):
    with pytest.raises(KeyFileError, match=problem) as info:
        parse_keys(text, "keys")
    assert "k-alice-in-clear" not in str(info.value)


def test_a_key_is_identified_by_its_hash_and_a_rotated_file_is_picked_up(tmp_path):
    path, clock = tmp_path / "keys", Clock()
    path.write_text(f"alice {hash_key('k-alice')}\n")
    store = KeyStore(path, clock=clock)
    assert store.identify("k-alice") == "alice"
    assert store.identify("k-alic") is None and store.identify(hash_key("k-alice")) is None
    path.write_text(f"bob {hash_key('k-bob')}\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within the file system's time resolution
    assert store.identify("k-bob") is None  # checked at most every 10 s
    clock.now += 10
    assert store.identify("k-bob") == "bob" and store.identify("k-alice") is None


def test_bearer_tokens():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def test_a_token_bucket_allows_its_burst_then_its_rate():
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # each key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0 and buckets.take("a") == pytest.approx(0.5)
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refills up to the burst, not beyond


def test_the_key_tool_prints_a_key_once_and_its_line(capsys, tmp_path):
    assert main(["new", "ci-runner"]) == 0
    captured = capsys.readouterr()
    key = captured.err.rsplit(" ", 1)[1].strip()
    (tmp_path / "keys").write_text(captured.out)
    assert key.startswith("hsk_") and key not in captured.out
    assert KeyStore(tmp_path / "keys").identify(key) == "ci-runner"


def test_auth_is_off_by_default_and_needs_a_keys_file_when_on():
    assert Settings().auth.enabled is False
    with pytest.raises(ValueError, match="auth.enabled needs auth.keys_file"):
        Settings.model_validate({"auth": {"enabled": True}})
