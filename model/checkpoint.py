"""Checkpoint reading, layout conversion and strict, verified loading.

Sources: an in-memory mapping, a file (.pth/.pt/.safetensors), an http(s) URL (downloaded into the
torch.hub cache with the sha256-prefix check of its file name) or a directory holding the variant's
file (air-gapped clusters). Pickles are only ever read with `weights_only=True`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from model.registry import Variant

log = logging.getLogger(__name__)

WeightsSource = Mapping[str, object] | str | os.PathLike
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.(?:pth|pt|safetensors)$")
_MAX_KEYS_IN_MESSAGE = 8


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, wrong hash, or keys that do not fit the model."""


def _keys_summary(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_IN_MESSAGE])
    more = len(keys) - _MAX_KEYS_IN_MESSAGE
    return shown + (f" (and {more} more)" if more > 0 else "")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hash_prefix(path: Path) -> None:
    """Check a torch.hub-style name (`...-<sha256 prefix>.pth`) against the file's content."""
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        return
    expected, actual = match.group(1), sha256_of(path)
    if not actual.startswith(expected):
        raise CheckpointError(f"hash mismatch for {path}: file name says sha256 {expected}..., content is {actual}")


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def download(url: str, cache_dir: Path | None = None, progress: bool = False) -> Path:
    """Fetch `url` into the torch.hub cache (once), verifying the sha256 prefix of its file name."""
    cache_dir = cache_dir or hub_checkpoint_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(urlparse(url).path).name
    if not target.exists():
        match = _HASH_IN_NAME.search(target.name)
        log.info("downloading %s to %s", url, target)
        try:
            torch.hub.download_url_to_file(
                url, str(target), hash_prefix=match.group(1) if match else None, progress=progress
            )
        except RuntimeError as exc:
            if "invalid hash value" in str(exc):
                raise CheckpointError(f"hash mismatch for {url}: {exc}") from exc
            raise
    verify_hash_prefix(target)
    return target


def find_in_directory(variant: Variant, directory: Path) -> Path | None:
    """The variant's checkpoint in a directory: the published file name first, then `<id>.<ext>`."""
    names = [variant.checkpoint_filename] + [f"{variant.id}{ext}" for ext in (".safetensors", ".pth", ".pt")]
    return next((directory / n for n in names if (directory / n).is_file()), None)


def read_file(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # Official checkpoints carry the training `args` as an argparse.Namespace: allow that one class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file; name the file and why
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def read_source(source: WeightsSource, variant: Variant) -> Mapping[str, object]:
    if isinstance(source, Mapping):
        return source
    text = os.fspath(source)
    if urlparse(text).scheme in ("http", "https", "file"):
        return read_file(download(text))
    path = Path(text)
    if path.is_dir():
        found = find_in_directory(variant, path)
        if found is None:
            raise CheckpointError(
                f"no checkpoint for {variant.id} in {path} (looked for {variant.checkpoint_filename})"
            )
        verify_hash_prefix(found)
        return read_file(found)
    return read_file(path)


def unwrap(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The bare state dict of an official (`model`) or mmpretrain (`state_dict`) wrapper, or a bare one."""
    for wrapper in ("state_dict", "model"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    not_tensors = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint entries that are not tensors: {_keys_summary(not_tensors)}")
    return dict(checkpoint)


_MMPRETRAIN_RENAMES = (
    (re.compile(r"^head\.fc\."), "head."),
    (re.compile(r"^backbone\.norm3\."), "norm."),
    (re.compile(r"^backbone\."), ""),
    (re.compile(r"\.gnconv\.projs\."), ".gnconv.pws."),
    (re.compile(r"\.(gamma[12])\.weight$"), r".\1"),
)


def convert_mmpretrain(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmpretrain key names -> the official ones this package's modules use."""
    converted = {}
    for key, value in state_dict.items():
        for pattern, replacement in _MMPRETRAIN_RENAMES:
            key = pattern.sub(replacement, key)
        converted[key] = value
    return converted


def to_official_layout(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    state_dict = unwrap(checkpoint)
    if any(k.startswith("backbone.") for k in state_dict):
        return convert_mmpretrain(state_dict)
    return state_dict


def head_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    try:
        return int(state_dict["head.weight"].shape[0])
    except KeyError:
        raise CheckpointError("checkpoint has no head.weight (nor head.fc.weight)") from None


def gf_sizes(state_dict: Mapping[str, torch.Tensor], variant: Variant) -> list[tuple[int, int] | None]:
    """Global-filter (h, w) per stage as stored in the checkpoint; the spectrum rule where absent."""
    sizes = variant.gf_sizes_for_input()
    for stage, default in enumerate(sizes):
        weight = state_dict.get(f"stages.{stage}.0.gnconv.dwconv.complex_weight")
        if default is not None and weight is not None and weight.dim() == 4:
            sizes[stage] = (int(weight.shape[1]), int(weight.shape[2]))
    return sizes


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """`load_state_dict(strict=True)` with an error that names every bad key, shape mismatches included."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_keys_summary(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_keys_summary(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_keys_summary(misshaped)}")
    if problems:
        raise CheckpointError("checkpoint does not fit the model; " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)
