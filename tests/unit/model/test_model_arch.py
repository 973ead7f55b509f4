import pytest
import torch

import model
from model.registry import get_builder
from tests.support import ROOT
from tests.support.golden import golden, official_state_dict, to_mmpretrain

MODEL_DOCS = ROOT / "docs" / "model.md"


def _count(name: str, num_classes: int | None) -> int:
    with torch.device("meta"):
        net = get_builder(name)(num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


def _with_head(variant: model.Variant, classes: int) -> int:
    """`params_1k` with a `classes`-row head instead: the head is Linear(8 * base_dim -> classes)."""
    return variant.params_1k + (classes - 1000) * (8 * variant.base_dim + 1)


def _docs_table(header_start: str) -> list[dict[str, str]]:
    """The rows of the table in docs/model.md whose header line starts with `header_start`."""
    lines = MODEL_DOCS.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(cells(lines[start]), cells(line), strict=True)))
    return rows


def _as_documented(v: model.Variant) -> dict[str, str]:
    gf, recipe = v.gf_sizes_for_input(), v.preprocessing
    resize = (
        f"short side {recipe.resize_short}, centre crop {recipe.input_size}"
        if recipe.mode == "resize_crop"
        else f"warp to {recipe.input_size}x{recipe.input_size}, no crop"
    )
    return {
        "id": v.id,
        "alias": ", ".join(v.aliases),
        "base_dim": str(v.base_dim),
        "mixer, stages 3-4": "GF" if v.global_filter else "DW 7x7",
        "GF (h, w) stage 3; stage 4": f"{gf[2]}; {gf[3]}" if v.global_filter else "-",
        "train data": v.train_data,
        "default classes": str(v.default_classes),
        "input": str(v.input_size),
        "eval resize": resize,
        "params (1k head)": f"{v.params_1k:,}",
        "GMACs": f"{v.gmacs:.2f}",
        "top-1": "-" if v.top1 is None else f"{v.top1:.2f}",
        "top-5": "-" if v.top5 is None else f"{v.top5:.2f}",
    }


def test_registry_is_the_model_card_of_the_docs():
    """The one place the registry meets the published model cards, as docs/model.md#variants cites them
    (params, GMACs, accuracy, GF shapes incl. the 384 ones, checkpoint files)."""
    documented = _docs_table("| id | alias | base_dim |")
    assert documented == [_as_documented(v) for v in model.VARIANTS.values()]
    files = {row["id"]: row["checkpoint file"] for row in _docs_table("| id | checkpoint file |")}
    assert files == {v.id: v.checkpoint_filename for v in model.VARIANTS.values()}


@pytest.mark.parametrize("name", sorted(model.VARIANTS))
def test_parameter_count_with_1000_classes_matches_the_registry(name):
    assert _count(name, 1000) == model.get_variant(name).params_1k


@pytest.mark.parametrize("name", ["hornet-l", "hornet-l-gf", "hornet-l-gf384"])
def test_large_variants_default_to_the_10459_class_head(name):
    variant = model.get_variant(name)
    assert variant.default_classes == 10459
    assert _count(name, None) == _with_head(variant, 10459)


def test_create_model_public_api_for_the_largest_variant():
    net = model.create_model("hornet-l-gf384")
    assert sum(p.numel() for p in net.parameters()) == _with_head(model.get_variant("hornet-l-gf384"), 10459)
    assert not net.training and next(net.parameters()).dtype == torch.float32


def test_aliases_resolve_and_unknown_names_are_refused():
    assert model.get_variant("hornet-large-gf384").id == "hornet-l-gf384"
    assert model.get_variant("hornet-tiny").id == "hornet-t"
    for bad in ("HORNET-T", "hornet-t ", "../hornet-t", "resnet50", ""):
        with pytest.raises(model.UnknownModelError):
            model.get_variant(bad)


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
