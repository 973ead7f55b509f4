"""Label sets, chosen by a head's size: ImageNet-1k (1000), the HorNet-22k order (10459) and
ImageNet-21k fall11 (21841). Data ships in model/data (WordNet ids and lemmas from timm's label info); the
22k order and its evidence: docs/model.md#imagenet-22k-label-order."""

from __future__ import annotations

import warnings
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# ImageNet-1k wnids missing from ImageNet-21K-P, appended (in 1k order) to form the HorNet-22k head.
_HORNET_22K_EXTRA = (
    "n02085782", "n02089078", "n02089867", "n02089973", "n02091635",
    "n02108000", "n02112706", "n02113978", "n04399382",
)  # fmt: skip


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    wnid: str | None
    name: str


class LabelSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    labels: tuple[Label, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Label:
        return self.labels[index]


def _data_lines(filename: str) -> list[str]:
    text = resources.files("model").joinpath("data", filename).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@cache
def _lemmas() -> dict[str, str]:
    return dict(line.split("\t", 1) for line in _data_lines("imagenet_synset_to_lemma.txt"))


def _from_wnids(name: str, wnids: list[str]) -> LabelSet:
    lemmas = _lemmas()
    return LabelSet(name=name, labels=tuple(Label(index=i, wnid=w, name=lemmas.get(w, w)) for i, w in enumerate(wnids)))


@cache
def imagenet_1k() -> LabelSet:
    return _from_wnids("imagenet-1k", _data_lines("imagenet_synsets.txt"))


@cache
def hornet_22k() -> LabelSet:
    return _from_wnids("hornet-22k", _data_lines("imagenet21k_miil_w21_synsets.txt") + list(_HORNET_22K_EXTRA))


@cache
def imagenet_21k() -> LabelSet:
    return _from_wnids("imagenet-21k", _data_lines("imagenet22k_synsets.txt"))


_BY_SIZE = {1000: imagenet_1k, 10459: hornet_22k, 21841: imagenet_21k}


def generic(num_classes: int) -> LabelSet:
    return LabelSet(
        name="generic", labels=tuple(Label(index=i, wnid=None, name=f"class_{i}") for i in range(num_classes))
    )


def from_file(path: str | Path, num_classes: int) -> LabelSet:
    """An operator's labels file: one label per line, either `wnid<TAB>name` or a bare name."""
    lines = [line.rstrip("\n") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != num_classes:
        raise ValueError(f"labels file {path} has {len(lines)} lines, the head has {num_classes} classes")
    labels = []
    for i, line in enumerate(lines):
        wnid, _, name = line.partition("\t")
        labels.append(Label(index=i, wnid=wnid, name=name) if name else Label(index=i, wnid=None, name=wnid))
    return LabelSet(name=f"file:{Path(path).name}", labels=tuple(labels))


def for_head(num_classes: int, labels_file: str | Path | None = None) -> LabelSet:
    """The label set for a head of `num_classes` rows; an operator's file wins over the built-in ones."""
    if labels_file is not None:
        return from_file(labels_file, num_classes)
    if num_classes in _BY_SIZE:
        return _BY_SIZE[num_classes]()
    warnings.warn(f"no built-in label set has {num_classes} classes; using generic names class_<i>", stacklevel=2)
    return generic(num_classes)
