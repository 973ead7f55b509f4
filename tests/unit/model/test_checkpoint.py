import argparse
import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import model
from model import checkpoint
from model.registry import get_builder
from tests.support.golden import golden, official_state_dict, to_mmpretrain


def _logits(net):
    x, _ = golden()
    with torch.inference_mode():
        return net(x[None])[0]


def _assert_golden(net):
    _, expected = golden()
    assert (_logits(net) - expected).abs().max().item() <= 1e-3


@pytest.fixture(scope="module")
def spec_weights() -> dict[str, torch.Tensor]:
    """SPEC.md's weights, made once for the module (each making costs most of a second)."""
    return official_state_dict()


@pytest.fixture
def official(spec_weights) -> dict[str, torch.Tensor]:
    """A fresh dict of them: tests add, drop and replace entries (loading copies, no tensor changes in place)."""
    return dict(spec_weights)


def _hub_name(path, stem="hornet-tiny_3rdparty_in1k_20220915"):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{stem}-{digest[:8]}.pth"


def test_official_file_with_training_args_loads_with_weights_only(tmp_path, official):
    path = tmp_path / "official.pth"
    sd = official
    torch.save({"model": sd, "model_ema": sd, "epoch": 299, "args": argparse.Namespace(lr=4e-3)}, path)
    _assert_golden(model.create_model("hornet-t", weights=path))
    _assert_golden(model.create_model("hornet-t", weights=str(path)))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_mmpretrain_layout_from_pt_and_safetensors(tmp_path, suffix, official):
    path = tmp_path / f"mm{suffix}"
    sd = to_mmpretrain(official)
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd, "meta": {"mmcls_version": "0.24.0"}}, path)
    _assert_golden(model.create_model("hornet-t", weights=path))


def test_checkpoint_directory_finds_the_published_file_name_and_checks_its_hash(tmp_path, official):
    staging = tmp_path / "staging.pth"
    torch.save(to_mmpretrain(official), staging)
    directory = tmp_path / "ckpts"
    directory.mkdir()
    good_name = model.get_variant("hornet-t").checkpoint_filename
    (directory / good_name).write_bytes(staging.read_bytes())
    # The published name carries the real checkpoint's hash, not our test file's: it must be refused.
    with pytest.raises(model.CheckpointError, match="hash mismatch"):
        model.create_model("hornet-t", weights=directory)
    (directory / good_name).unlink()
    (directory / "hornet-t.pth").write_bytes(staging.read_bytes())
    _assert_golden(model.create_model("hornet-t", weights=directory))
    with pytest.raises(model.CheckpointError, match="no checkpoint for hornet-s"):
        model.create_model("hornet-s", weights=directory)


def test_url_download_goes_to_the_hub_cache_and_verifies_the_hash(http_dir, hub_dir, tmp_path, official):
    root, base = http_dir
    staging = tmp_path / "staging.pth"
    torch.save({"state_dict": to_mmpretrain(official)}, staging)
    name = _hub_name(staging)
    (root / name).write_bytes(staging.read_bytes())
    _assert_golden(model.create_model("hornet-t", weights=base + name))
    assert (hub_dir / name).is_file()
    # Second load is served from the cache: the server no longer has the file.
    (root / name).unlink()
    _assert_golden(model.create_model("hornet-t", weights=base + name))


def test_url_with_wrong_hash_is_refused_and_not_cached(http_dir, hub_dir, tmp_path, official):
    root, base = http_dir
    staging = tmp_path / "staging.pth"
    torch.save(official, staging)
    name = "hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth"
    (root / name).write_bytes(staging.read_bytes())
    with pytest.raises(model.CheckpointError, match="hash mismatch"):
        model.create_model("hornet-t", weights=base + name)
    assert not (hub_dir / name).exists()


def test_corrupt_and_missing_files_name_the_file(tmp_path, official):
    path = tmp_path / "corrupt.pth"
    torch.save(official, path)
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(model.CheckpointError, match="cannot read checkpoint .*corrupt.pth"):
        model.create_model("hornet-t", weights=path)
    with pytest.raises(model.CheckpointError, match="not found"):
        model.create_model("hornet-t", weights=tmp_path / "absent.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/hornet-pwned",))


def test_a_malicious_pickle_is_refused_and_never_executed(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Exploit()}, f)
    marker = "/tmp/hornet-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(model.CheckpointError, match="Weights only load failed"):
        model.create_model("hornet-t", weights=path)
    assert not os.path.exists(marker)


def test_missing_unexpected_and_misshaped_keys_are_named(official):
    sd = official
    del sd["stages.2.5.gnconv.proj_in.weight"]
    sd["stages.9.0.bogus"] = torch.zeros(1)
    sd["stages.0.0.pwconv1.weight"] = torch.zeros(3, 3)
    with pytest.raises(model.CheckpointError) as info:
        model.create_model("hornet-t", weights=sd)
    message = str(info.value)
    assert "missing keys: stages.2.5.gnconv.proj_in.weight" in message
    assert "unexpected keys: stages.9.0.bogus" in message
    assert "mis-shaped keys: stages.0.0.pwconv1.weight (checkpoint (3, 3), model (256, 64))" in message


def test_wrong_variant_for_the_checkpoint_fails_loudly(official):
    with pytest.raises(model.CheckpointError, match="mis-shaped keys"):
        model.create_model("hornet-s", weights=official)
    with pytest.raises(model.CheckpointError, match="missing keys: .*complex_weight"):
        model.create_model("hornet-t-gf", weights=official)


def test_head_size_follows_the_checkpoint_and_num_classes_must_agree(official):
    sd = official
    sd["head.weight"] = sd["head.weight"][:37].clone()
    sd["head.bias"] = sd["head.bias"][:37].clone()
    assert model.create_model("hornet-t", weights=sd).num_classes == 37
    with pytest.raises(model.CheckpointError, match="num_classes=1000"):
        model.create_model("hornet-t", weights=sd, num_classes=1000)


def test_gf_filter_shapes_follow_the_checkpoint():
    # mmpretrain's own large-gf384 table: (24, 12); (13, 7) instead of the spectrum's (24, 13); (12, 7).
    src = get_builder("hornet-t-gf")(num_classes=5, gf_sizes=[None, None, (24, 12), (13, 7)])
    net = model.create_model("hornet-t-gf", weights=src.state_dict())
    assert net.stages[2][0].gnconv.dwconv.complex_weight.shape[1:3] == (24, 12)
    assert net.stages[3][0].gnconv.dwconv.complex_weight.shape[1:3] == (13, 7)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(net(x), src.eval()(x), atol=1e-5)


def test_non_tensor_entries_are_refused(official):
    with pytest.raises(model.CheckpointError, match="not tensors: epoch"):
        model.create_model("hornet-t", weights={"epoch": 3, **official})
    assert checkpoint.head_classes(official) == 1000
