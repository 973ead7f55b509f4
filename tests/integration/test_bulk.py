"""`hornet-classify-bulk` on a generated corpus: a real local Ray per run (a subprocess, so a run can be killed
with SIGKILL and resumed), a seeded test checkpoint, and the gateway's own decode path as the reference."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from model import BatchPredictor, ImageDecodeError, ImageTooLargeError, create_model, get_variant
from model.labels import imagenet_1k
from service.bulk.decode import INVALID_IMAGE, TOO_LARGE, UNREADABLE, decode_batch
from service.bulk.inputs import SourceError, list_inputs
from service.bulk.job import make_job
from service.bulk.output import OutputMismatch, PartWriter, read_existing
from service.config import Settings
from service.decoding import DecodeRules
from service.http.decode import Decoder
from tests.support.images import encode, photo, png_header

ROOT = Path(__file__).parents[2]
MODEL = "hornet-t"
GOOD = 200
# The service config the bulk runs read: the limits the gateway would apply, the variant's batch size.
CONFIG = {
    "models": [MODEL],
    "weights_policy": "required",
    "classifier": {"precision": "fp32", "batch": {"max_batch_size": 8}, "max_ongoing_requests": 64},
    "limits": {"max_body_bytes": 300_000, "max_pixels": 20_000_000},
}
SETTINGS = Settings.model_validate(CONFIG)


def _good_image(i: int) -> tuple[str, bytes]:
    """Small images in every format and mode the gateway reads."""
    rng = np.random.default_rng(i)
    image = photo(int(rng.integers(24, 200)), int(rng.integers(24, 200)), seed=i)
    kind = i % 8
    if kind == 0:
        return "jpg", encode(image, "JPEG", quality=85)
    if kind == 1:
        return "png", encode(image, "PNG")
    if kind == 2:
        return "webp", encode(image, "WEBP")
    if kind == 3:
        return "gif", encode(image.convert("P", palette=Image.ADAPTIVE), "GIF")
    if kind == 4:
        return "bmp", encode(image.convert("L"), "BMP")
    if kind == 5:
        return "tiff", encode(image, "TIFF")
    if kind == 6:
        rgba = image.convert("RGBA")
        rgba.putalpha(128)
        return "png", encode(rgba, "PNG")
    return "jpg", encode(image.convert("CMYK"), "JPEG")


def _bad_images() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the error type the gateway's checks give it)."""
    jpeg = encode(photo(120, 90, seed=1), "JPEG")
    noise = np.random.default_rng(0).integers(0, 256, (240, 420, 3), dtype=np.uint8)
    return {
        "empty.jpg": (b"", INVALID_IMAGE),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], INVALID_IMAGE),
        "random.png": (np.random.default_rng(1).bytes(2000), INVALID_IMAGE),
        "notes.txt": (b"not an image at all\n", INVALID_IMAGE),
        "zero-size.png": (png_header(0, 0), INVALID_IMAGE),
        "bomb.png": (png_header(30000, 30000), TOO_LARGE),
        "oversized.bmp": (encode(Image.fromarray(noise), "BMP"), TOO_LARGE),  # 302 KB > max_body_bytes
        "bad/also-truncated.png": (encode(photo(80, 80, seed=2), "PNG")[:100], INVALID_IMAGE),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bulk")
    images = root / "images"
    good = {}
    for i in range(GOOD):
        ext, data = _good_image(i)
        path = images / f"dir{i % 3}" / f"img{i:03d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        good[str(path)] = data
    bad = {}
    for name, (data, error_type) in _bad_images().items():
        path = images / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        bad[str(path)] = error_type
    (images / ".DS_Store").write_bytes(b"hidden: not an input")
    (images / ".thumbs").mkdir()
    (images / ".thumbs" / "t.jpg").write_bytes(encode(photo(32, 32), "JPEG"))
    # A seeded checkpoint with a sharpened head: distinct top-5 scores, so ties cannot blur the comparison.
    torch.manual_seed(0)
    net = create_model(MODEL)
    with torch.no_grad():
        net.head.weight.mul_(20)
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    torch.save(net.state_dict(), checkpoints / f"{MODEL}.pth")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return {"root": root, "images": images, "good": good, "bad": bad, "checkpoints": checkpoints, "config": config}


def _command(corpus: dict, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "service.bulk.cli", str(corpus["images"]), "--model", MODEL, "--out", str(out),
            "--config", str(corpus["config"]), "--checkpoint-dir", str(corpus["checkpoints"]), "--num-cpus", "2",
            "--cpu-threads", "1", "--no-progress", "--summary-json", str(out.parent / "summary.json"), *extra]  # fmt: skip


def _env() -> dict[str, str]:
    """A new local Ray per run, never one that the test session or anyone else started."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HORNET_SERVE_CONFIG")}
    return {**env, "PYTHONPATH": str(ROOT)}


def _run(corpus: dict, out: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_command(corpus, out, *extra), env=_env(), capture_output=True, text=True, timeout=timeout)


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def _kill_after_parts(corpus: dict, out: Path, parts: int) -> None:
    """Start a run and SIGKILL it (and the local Ray it started) once `parts` parts are written."""
    proc = subprocess.Popen(_command(corpus, out, "--part-rows", "16", "--decode-batch-size", "8"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    try:
        while len(_parts(out)) < parts:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run wrote no parts in time"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _gateway_decode(uploads: list[bytes]) -> list[np.ndarray | Exception]:
    """The online service's decoder itself (the gateway's `Decoder`, same settings): pixels, or the error."""

    async def decode_all() -> list[np.ndarray | Exception]:
        rules = DecodeRules.from_settings(SETTINGS.limits, SETTINGS.timeouts.decode_s)
        decoder, results = Decoder(SETTINGS.gateway, rules), []
        for data in uploads:
            try:
                results.append(await decoder.prepare(data, get_variant(MODEL).preprocessing, replica_decodes=False))
            except (ImageDecodeError, ImageTooLargeError) as exc:
                results.append(exc)
        return results

    return asyncio.run(decode_all())


@pytest.fixture(scope="module")
def resumed(corpus) -> dict:
    """A run killed after two parts, then a rerun that finishes it."""
    out = corpus["root"] / "results.parquet"
    _kill_after_parts(corpus, out, parts=2)
    killed_rows = sum(pq.read_metadata(p).num_rows for p in _parts(out))
    (out / "part-killed-mid-write.parquet.tmp").write_bytes(b"PAR1 half a part")  # as a kill during a write leaves
    result = _run(corpus, out)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out.parent / "summary.json").read_text())
    return {"out": out, "killed_rows": killed_rows, "result": result, "summary": summary}


def test_a_killed_run_resumes_and_every_input_appears_exactly_once(corpus, resumed):
    total = GOOD + len(corpus["bad"])
    assert 32 <= resumed["killed_rows"] < total, "the kill must land mid-way"
    table = pq.read_table(resumed["out"])
    paths = table.column("path").to_pylist()
    assert len(paths) == len(set(paths)) == total
    assert set(paths) == set(corpus["good"]) | set(corpus["bad"])  # hidden files are not inputs
    summary = resumed["summary"]
    assert summary["already_done"] == resumed["killed_rows"]
    assert summary["classified"] == total - resumed["killed_rows"]
    assert summary["inputs"] == total
    assert not list(resumed["out"].glob("*.tmp"))
    line = resumed["result"].stdout.strip().splitlines()[-1]
    assert line.startswith("hornet-classify-bulk: ") and "images/s" in line and "failed" in line


def test_errors_are_rows_named_by_the_gateways_error_types(corpus, resumed):
    rows = pq.read_table(resumed["out"]).to_pylist()
    errors = {r["path"]: r["error_type"] for r in rows if r["error_type"]}
    assert errors == corpus["bad"]
    for row in rows:
        if row["error_type"]:
            assert row["error"] and row["class_indices"] is None and row["scores"] is None
        else:
            assert row["error"] is None and len(row["class_indices"]) == 5
    oversized = next(r for r in rows if r["path"].endswith("oversized.bmp"))
    assert "limit is 300000" in oversized["error"]
    # The gateway refuses the same files for the same reasons (empty and oversized uploads are refused before
    # decoding, by its upload checks).
    decoded = {p: Path(p).read_bytes() for p in corpus["bad"]}
    decoded = {p: d for p, d in decoded.items() if d and len(d) <= CONFIG["limits"]["max_body_bytes"]}
    for path, error in zip(decoded, _gateway_decode(list(decoded.values())), strict=True):
        assert isinstance(error, ImageTooLargeError if corpus["bad"][path] == TOO_LARGE else ImageDecodeError)


def test_predictions_equal_the_model_on_the_gateways_pixels(corpus, resumed):
    rows = {r["path"]: r for r in pq.read_table(resumed["out"]).to_pylist() if not r["error_type"]}
    assert set(rows) == set(corpus["good"])
    net = create_model(MODEL, weights=str(corpus["checkpoints"] / f"{MODEL}.pth"))
    predictor = BatchPredictor(net, get_variant(MODEL).preprocessing, "cpu", "fp32")
    paths = sorted(rows)
    pixels = np.stack(_gateway_decode([corpus["good"][p] for p in paths]))
    probs = torch.cat([predictor.logits(pixels[i : i + 16]).softmax(-1) for i in range(0, len(paths), 16)]).numpy()
    labels = imagenet_1k()
    exact = 0
    for path, p in zip(paths, probs, strict=True):
        row = rows[path]
        reference = np.argsort(-p)[:5]
        # The bulk top-5 are the model's top-5 (scores equal; indices equal up to exact ties).
        np.testing.assert_allclose(row["scores"], p[reference], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p[row["class_indices"]], row["scores"], rtol=1e-4, atol=1e-6)
        exact += row["class_indices"] == reference.tolist()
        assert row["labels"] == [labels[i].name for i in row["class_indices"]]
        assert row["wnids"] == [labels[i].wnid for i in row["class_indices"]]
        assert (row["model"], row["weights"], row["precision"]) == (MODEL, "checkpoint", "fp32")
        assert row["weights_source"].endswith(f"{MODEL}.pth")
    assert exact >= len(paths) - 2


def test_a_rerun_on_a_complete_output_redoes_nothing(corpus, resumed):
    before = _parts(resumed["out"])
    result = _run(corpus, resumed["out"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((resumed["out"].parent / "summary.json").read_text())
    assert summary["classified"] == 0 and summary["already_done"] == GOOD + len(corpus["bad"])
    assert _parts(resumed["out"]) == before


def test_another_model_cannot_write_into_the_same_output(corpus, resumed):
    command = _command(corpus, resumed["out"])
    command[command.index(MODEL)] = "hornet-s"
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "hornet-t" in result.stderr and "choose another --out" in result.stderr


# --- the parts, without Ray --------------------------------------------------------------------------------


def test_inputs_from_a_directory_a_glob_and_a_list_file(tmp_path):
    for name in ["a/1.jpg", "a/b/2.png", "a/b/3.jpg", "a/.hidden.jpg", "a/.cache/4.jpg", "c.JPG"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_inputs(str(tmp_path / "a")) == [str(tmp_path / p) for p in ["a/1.jpg", "a/b/2.png", "a/b/3.jpg"]]
    assert list_inputs(str(tmp_path / "a" / "*.jpg")) == [str(tmp_path / "a/1.jpg")]
    assert list_inputs(str(tmp_path / "a" / "**" / "*.jpg")) == [str(tmp_path / p) for p in ["a/1.jpg", "a/b/3.jpg"]]
    assert list_inputs(str(tmp_path), ("jpg",)) == [str(tmp_path / p) for p in ["a/1.jpg", "a/b/3.jpg", "c.JPG"]]
    listing = tmp_path / "paths.txt"
    listing.write_text(f"# photos\na/1.jpg\n\n{tmp_path / 'c.JPG'}\na/1.jpg\nmissing.jpg\n")
    assert list_inputs(str(listing)) == [str(tmp_path / p) for p in ["a/1.jpg", "c.JPG", "missing.jpg"]]
    assert list_inputs(str(tmp_path / "c.JPG")) == [str(tmp_path / "c.JPG")]
    with pytest.raises(SourceError, match="does not exist"):
        list_inputs(str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="matches no file"):
        list_inputs(str(tmp_path / "*.webp"))


def test_decode_stage_gives_the_gateways_pixels_and_names_what_it_cannot_read(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(encode(photo(300, 200, seed=3), "JPEG"))
    batch = {"path": np.array([str(good), str(tmp_path / "missing.jpg"), str(tmp_path)], dtype=object)}
    out = decode_batch(batch, variant=SETTINGS.variant(MODEL))
    np.testing.assert_array_equal(out["pixels"][0], _gateway_decode([good.read_bytes()])[0])
    assert list(out["error_type"]) == ["", UNREADABLE, UNREADABLE]
    assert "missing.jpg" in out["error"][1]
    assert not out["pixels"][1:].any()


def test_job_takes_the_variants_settings_and_the_flags_win():
    settings = Settings.model_validate({**CONFIG, "per_model": {MODEL: {"precision": "bf16", "cpu_threads": 3}}})
    job = make_job(settings, MODEL, 0, {})
    assert (job.precision, job.batch_size, job.cpu_threads, job.num_gpus, job.concurrency) == ("bf16", 8, 3, 0, 1)
    job = make_job(settings, MODEL, 0, {"precision": "fp32", "batch_size": 32, "top_k": 10})
    assert (job.precision, job.batch_size, job.top_k) == ("fp32", 32, 10)
    gpu = make_job(settings, MODEL, 4, {})  # device auto on a cluster with 4 GPUs: one actor per GPU
    assert (gpu.num_gpus, gpu.concurrency) == (1.0, 4)
    assert make_job(settings, MODEL, 4, {"num_gpus": 0.5}).concurrency == 8
    assert make_job(settings, MODEL, 0, {"concurrency": 2, "actor_cpus": 1.5}).cpus_needed == 3.5
    with pytest.raises(ValueError, match="max_top_k"):
        make_job(settings, MODEL, 0, {"top_k": 101})


def test_model_actors_decode_jpegs_where_a_classifier_replica_would():
    def device_decodes(decode: str, cluster_gpus: float) -> bool:
        settings = Settings.model_validate({**CONFIG, "classifier": {**CONFIG["classifier"], "decode": decode}})
        return make_job(settings, MODEL, cluster_gpus, {}).device_decodes

    assert [device_decodes("auto", 0), device_decodes("auto", 4)] == [False, True]
    assert [device_decodes("replica", 0), device_decodes("gateway", 4)] == [True, False]


def test_decode_stage_passes_the_jpegs_a_device_decoder_takes_as_bytes(tmp_path):
    """Baseline JPEGs (colour, grey, with their EXIF orientation) go on as bytes; progressive and CMYK JPEGs and
    other formats are decoded here, as the gateway would."""
    image = photo(300, 200, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {
        "baseline.jpg": encode(image, "JPEG", exif=exif.tobytes()),
        "grey.jpg": encode(image.convert("L"), "JPEG"),
        "progressive.jpg": encode(image, "JPEG", progressive=True),
        "cmyk.jpg": encode(image.convert("CMYK"), "JPEG"),
        "photo.png": encode(image, "PNG"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    batch = {"path": np.array([str(tmp_path / name) for name in files], dtype=object)}
    out = decode_batch(batch, variant=SETTINGS.variant(MODEL), device_decodes=True)
    assert [bool(jpeg) for jpeg in out["jpeg"]] == [True, True, False, False, False]
    assert out["jpeg"][0] == files["baseline.jpg"] and list(out["orientation"][:2]) == [6, 1]
    assert not out["pixels"][:2].any()
    for i, pixels in enumerate(_gateway_decode(list(files.values()))[2:], start=2):
        np.testing.assert_array_equal(out["pixels"][i], pixels)
    assert list(out["error_type"]) == [""] * len(files)
    on_cpu = decode_batch(batch, variant=SETTINGS.variant(MODEL))
    assert not any(on_cpu["jpeg"])
    for decoded, pixels in zip(on_cpu["pixels"], _gateway_decode(list(files.values())), strict=True):
        np.testing.assert_array_equal(decoded, pixels)


def test_a_run_that_decodes_on_the_actors_device_gives_the_same_results(corpus, resumed, tmp_path):
    """The whole pipeline with `classifier.decode: replica` on the CPU: the JPEG bytes cross Ray Data to the model
    actors, which decode them (the replica's path, Pillow here and nvJPEG on a GPU). Same error rows (the truncated
    JPEG now fails in the actor, alone), the same top-1 within the device path's fidelity (docs/performance.md)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "classifier": {**CONFIG["classifier"], "decode": "replica"}}))
    out = tmp_path / "device.parquet"
    result = _run({**corpus, "config": config}, out)
    assert result.returncode == 0, result.stderr[-3000:]
    device = {r["path"]: r for r in pq.read_table(out).to_pylist()}
    exact = {r["path"]: r for r in pq.read_table(resumed["out"]).to_pylist()}
    assert {p: r["error_type"] for p, r in device.items() if r["error_type"]} == corpus["bad"]
    jpegs = [p for p in corpus["good"] if p.endswith(".jpg")]
    assert jpegs, "the corpus has JPEGs"
    same_top1 = sum(device[p]["class_indices"][0] == exact[p]["class_indices"][0] for p in corpus["good"])
    assert same_top1 >= len(corpus["good"]) - 2
    others = [p for p in corpus["good"] if not p.endswith(".jpg")]  # decoded in the decode stage, as before
    assert all(device[p]["class_indices"][0] == exact[p]["class_indices"][0] for p in others)


def test_parts_record_their_model_and_unfinished_writes_are_removed(tmp_path):
    import pyarrow as pa

    from service.bulk.output import RESULT_SCHEMA

    out = tmp_path / "out"
    writer = PartWriter(str(out), MODEL, 5, part_rows=2)
    row = {"path": "a", "model": MODEL, "weights": "checkpoint", "weights_source": "x", "precision": "fp32"}
    for name in ["a", "b", "c"]:
        writer.add(pa.Table.from_pylist([{**row, "path": name}], schema=RESULT_SCHEMA))
    writer.close()
    assert (writer.parts, writer.rows) == (2, 3)
    (out / "part-x.parquet.tmp").write_bytes(b"half")
    existing = read_existing(str(out), MODEL, 5)
    assert existing.done == {"a", "b", "c"} and existing.removed_tmp == 1
    assert not list(out.glob("*.tmp"))
    with pytest.raises(OutputMismatch, match="hornet-s"):
        read_existing(str(out), "hornet-s", 5)
    with pytest.raises(OutputMismatch):
        read_existing(str(out), MODEL, 3)
    assert read_existing(str(tmp_path / "new"), MODEL, 5).done == set()


def test_a_local_ray_too_small_for_the_pipeline_is_refused(corpus, tmp_path):
    result = _run(corpus, tmp_path / "out", "--concurrency", "2", timeout=120)
    assert result.returncode == 2
    assert "needs 2.5 logical CPUs" in result.stderr
