import numpy as np
import pytest
import torch
from PIL import Image

import model
from tests.support.golden import DATA, golden, official_state_dict
from tests.support.nets import narrow_hornet


@pytest.fixture(scope="module")
def golden_model():
    return model.create_model("hornet-t", weights=official_state_dict())


@pytest.fixture(scope="module")
def golden_pixels():
    recipe = model.get_variant("hornet-t").preprocessing
    return model.resize(Image.open(DATA / "public_input.png").convert("RGB"), recipe)[None]


@pytest.fixture(scope="module")
def fp32_top5(golden_model, golden_pixels):
    return model.BatchPredictor(golden_model, model.get_variant("hornet-t").preprocessing).predict(golden_pixels)[0]


def test_fp32_predictor_matches_the_golden_logits_and_topk(golden_model, golden_pixels):
    _, expected = golden()
    predictor = model.BatchPredictor(golden_model, model.get_variant("hornet-t").preprocessing)
    logits = predictor.logits(golden_pixels)[0]
    assert (logits - expected).abs().max().item() <= 1e-3
    indices, scores = predictor.predict(golden_pixels, top_k=5)
    assert indices.shape == (1, 5) and scores.dtype == np.float32
    assert indices[0].tolist() == expected.topk(5).indices.tolist()
    assert np.all(np.diff(scores[0]) <= 0) and 0 < scores[0].sum() <= 1 + 1e-6
    assert np.allclose(scores[0], expected.softmax(-1).topk(5).values.numpy(), atol=1e-5)


def test_batch_results_do_not_depend_on_batch_neighbours(golden_model, golden_pixels):
    predictor = model.BatchPredictor(golden_model, model.get_variant("hornet-t").preprocessing)
    noise = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    batch = np.concatenate([noise[:1], golden_pixels, noise[1:]])
    alone = predictor.logits(golden_pixels)[0]
    assert torch.allclose(predictor.logits(batch)[1], alone, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_reduced_precision_keeps_the_fp32_top1(golden_model, golden_pixels, fp32_top5, precision, record_property):
    recipe = model.get_variant("hornet-t").preprocessing
    fp32_idx = fp32_top5
    predictor = model.BatchPredictor(golden_model, recipe, precision=precision)
    assert predictor.precision == model.resolve_precision(precision, "cpu") != "auto"
    idx, scores = predictor.predict(golden_pixels)
    agreement = len(set(idx[0].tolist()) & set(fp32_idx[0].tolist())) / 5
    record_property(f"top5_agreement_{precision}", agreement)
    print(
        f"{precision} ({predictor.precision}): top-1 {idx[0, 0]} (fp32 {fp32_idx[0, 0]}), top-5 agreement {agreement:.0%}"
    )
    assert idx[0, 0] == fp32_idx[0, 0]
    assert agreement >= 0.6 and np.isfinite(scores).all()


def test_global_filter_fft_stays_fp32_under_autocast():
    variant = model.get_variant("hornet-t-gf")
    net, recipe = narrow_hornet(tuple(variant.gf_sizes_for_input())), variant.preprocessing
    pixels = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    seen = []
    gf = net.stages[2][0].gnconv.dwconv
    hook = gf.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
    original = torch.fft.rfft2
    dtypes = []

    def spy(x, *args, **kwargs):
        dtypes.append(x.dtype)
        return original(x, *args, **kwargs)

    torch.fft.rfft2 = spy
    try:
        fp32 = model.BatchPredictor(net, recipe).logits(pixels)
        bf16 = model.BatchPredictor(net, recipe, precision="bf16").logits(pixels)
    finally:
        torch.fft.rfft2 = original
        hook.remove()
    assert seen[-1] is True, "the bf16 run did not run under autocast"
    assert dtypes and set(dtypes) == {torch.float32}
    assert fp32.argmax(-1).tolist() == bf16.argmax(-1).tolist()


def test_warmup_runs_every_batch_size():
    net = narrow_hornet()
    predictor = model.BatchPredictor(net, model.get_variant("hornet-t").preprocessing)
    calls = []
    hook = net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    predictor.warmup([1, 4])
    hook.remove()
    assert calls == [1, 4]


def _proc_cpuinfo_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())


def test_auto_precision_on_this_cpu_follows_its_bf16_instructions():
    flags = _proc_cpuinfo_flags()
    expected = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"
    print(f"CPU bf16 flags: {sorted(flags & {'avx512_bf16', 'amx_bf16', 'amx_tile'})} -> auto = {expected}")
    assert model.resolve_precision("auto", "cpu") == expected
    assert torch.cpu._is_avx512_bf16_supported() == ("avx512_bf16" in flags)


@pytest.mark.parametrize(
    ("flags", "fast"),
    [
        ({"avx2", "avx512f"}, False),
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_tile", "amx_bf16"}, True),
        (set(), False),
    ],
)
def test_cpu_bf16_rule(flags, fast):
    assert model.precision.cpu_has_fast_bf16(frozenset(flags)) is fast


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda_is_bf16_where_supported_else_fp16(monkeypatch, bf16_supported, expected):
    # No GPU here: the capability query is the one thing stood in for (loadtest.gpu_check runs the real one).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert model.resolve_precision("auto", "cuda") == expected


def test_explicit_precisions_pass_through_and_unknown_ones_are_refused():
    for precision in ("fp32", "bf16", "fp16"):
        assert model.resolve_precision(precision, "cpu") == precision
    with pytest.raises(ValueError, match="unknown precision"):
        model.resolve_precision("int8", "cpu")
