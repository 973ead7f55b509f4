"""The Python client (sync and async) and the `hornet-classify` CLI against the live service."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.client import AsyncHornetClient, HornetClient, HornetError
from tests.support.images import encode, photo


@pytest.fixture
def files(tmp_path):
    paths = []
    for i, fmt in enumerate(["JPEG", "PNG", "WEBP"]):
        path = tmp_path / f"img{i}.{fmt.lower()}"
        path.write_bytes(encode(photo(160, 120, seed=20 + i), fmt))
        paths.append(path)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not really a png")
    return paths, bad


def test_sync_client_classifies_lists_and_raises_typed_errors(service, files):
    paths, bad = files
    with HornetClient(service.base_url) as client:
        result = client.classify(paths[0], model="hornet-t", top_k=3)
        assert result.model == "hornet-t" and len(result.predictions) == 3
        assert client.classify(paths[1].read_bytes()).model == "hornet-t"
        assert {m.id for m in client.models().models} == {"hornet-t", "hornet-l-gf384"}
        with pytest.raises(HornetError) as info:
            client.classify(bad)
        assert info.value.status == 400 and info.value.type == "invalid_image" and info.value.request_id
        with pytest.raises(HornetError, match="404 unknown_model"):
            client.classify(paths[0], model="hornet-z")
        big = encode(photo(2400, 1800, seed=7), "JPEG", quality=95)
        assert client.classify(big, shrink=True).model == "hornet-t"  # sent downscaled (test_fidelity: how)
        with pytest.raises(HornetError) as info:
            client.classify(b"not an image", shrink=True)  # what cannot be shrunk goes up as it is
        assert info.value.type == "invalid_image"


def test_async_client_runs_requests_concurrently(service, files):
    paths, _ = files

    async def run():
        async with AsyncHornetClient(service.base_url) as client:
            return await asyncio.gather(*(client.classify(p, model="hornet-t") for p in paths * 2))

    results = asyncio.run(run())
    assert len(results) == 6 and all(len(r.predictions) == 5 for r in results)


def test_cli_prints_a_table_and_json(service, files):
    paths, bad = files
    cli = Path(sys.executable).parent / "hornet-classify"
    table = subprocess.run([str(cli), *map(str, paths), "--url", service.base_url, "--model", "hornet-tiny"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("[hornet-t]") == 3 and "random weights" in table.stdout
    assert table.stdout.count("  5. ") == 3
    out = subprocess.run([str(cli), str(paths[0]), str(bad), "--url", service.base_url, "--json",
                          "--concurrency", "2", "--progress"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1, "a failed file must make the exit status non-zero"
    results = json.loads(out.stdout)
    assert results[0]["file"] == str(paths[0]) and len(results[0]["predictions"]) == 5
    assert results[1]["error"]["type"] == "invalid_image"
    assert "2/2" in out.stderr  # the progress bar
