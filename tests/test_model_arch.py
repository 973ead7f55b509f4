import pytest
import torch

import model
from golden import golden, official_state_dict, to_mmpretrain
from model.registry import get_builder

SPEC_PARAMS_1K = {
    "hornet-t": 22_409_512, "hornet-t-gf": 22_991_848, "hornet-s": 49_528_264, "hornet-s-gf": 50_401_768,
    "hornet-b": 87_256_680, "hornet-b-gf": 88_421_352, "hornet-l": 194_542_504, "hornet-l-gf": 196_289_512,
    "hornet-l-gf384": 201_806_824,
}  # fmt: skip


def _count(name: str, num_classes: int | None) -> int:
    with torch.device("meta"):
        net = get_builder(name)(num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", sorted(SPEC_PARAMS_1K))
def test_parameter_count_with_1000_classes_matches_spec(name):
    assert _count(name, 1000) == SPEC_PARAMS_1K[name]


@pytest.mark.parametrize(("name", "expected"), [("hornet-l", 209_080_987), ("hornet-l-gf384", 216_345_307)])
def test_large_variants_default_to_the_10459_class_head(name, expected):
    assert model.get_variant(name).default_classes == 10459
    assert _count(name, None) == expected


def test_create_model_public_api_for_the_largest_variant():
    net = model.create_model("hornet-l-gf384")
    assert sum(p.numel() for p in net.parameters()) == 216_345_307
    assert not net.training and next(net.parameters()).dtype == torch.float32


def test_aliases_resolve_and_unknown_names_are_refused():
    assert model.get_variant("hornet-large-gf384").id == "hornet-l-gf384"
    assert model.get_variant("hornet-tiny").id == "hornet-t"
    for bad in ("HORNET-T", "hornet-t ", "../hornet-t", "resnet50", ""):
        with pytest.raises(model.UnknownModelError):
            model.get_variant(bad)


def test_gf_sizes_follow_the_spectrum_rule():
    assert model.get_variant("hornet-t-gf").gf_sizes_for_input() == [None, None, (14, 8), (7, 4)]
    assert model.get_variant("hornet-l-gf384").gf_sizes_for_input() == [None, None, (24, 13), (12, 7)]
    assert model.get_variant("hornet-b").gf_sizes_for_input() == [None] * 4


@pytest.mark.parametrize("layout", ["official", "official-wrapped", "mmpretrain", "mmpretrain-wrapped"])
def test_golden_logits_match_the_authors_implementation(layout):
    x, expected = golden()
    official = official_state_dict()
    weights = {
        "official": official,
        "official-wrapped": {"model": official, "epoch": 300},
        "mmpretrain": to_mmpretrain(official),
        "mmpretrain-wrapped": {"state_dict": to_mmpretrain(official), "meta": {"epoch": 300}},
    }[layout]
    net = model.create_model("hornet-t", weights=weights)
    with torch.inference_mode():
        logits = net(x[None])[0]
    assert (logits - expected).abs().max().item() <= 1e-3


def test_fused_and_reference_layernorm_agree_on_the_golden_input():
    x, expected = golden()
    net = model.create_model("hornet-t", weights=official_state_dict())
    model.set_fused_layernorm(net, False)
    with torch.inference_mode():
        reference = net(x[None])[0]
    assert (reference - expected).abs().max().item() <= 1e-3


@pytest.mark.parametrize("name", ["hornet-t-gf", "hornet-l-gf384"])
def test_global_filter_variants_run_and_resize_mismatched_filters(name):
    variant = model.get_variant(name)
    size = variant.input_size
    net = get_builder(name)(num_classes=10, gf_sizes=[None, None, (5, 3), (3, 2)]).eval()
    with torch.inference_mode():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
