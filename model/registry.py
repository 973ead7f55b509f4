"""The nine HorNet variants: a builder each, plus the metadata a server needs (preprocessing, labels,
checkpoint URL, size, accuracy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from model.hornet import HorNet, HorNetConfig

MMPRETRAIN_URL = "https://download.openmmlab.com/mmclassification/v0/hornet/"
IN22K_HORNET_CLASSES = 10459


class Preprocessing(BaseModel):
    """The evaluation resize recipe. `resize_crop`: short side to `resize_short` (bicubic), centre crop
    `input_size`. `warp`: bicubic resize straight to `input_size` x `input_size`."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["resize_crop", "warp"]
    input_size: int
    resize_short: int | None = None
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    aliases: tuple[str, ...]
    base_dim: int
    global_filter: bool
    preprocessing: Preprocessing
    train_data: Literal["imagenet-1k", "imagenet-22k"]
    default_classes: int
    checkpoint_url: str
    params_1k: int  # parameter count with a 1000-class head, from the model card
    gmacs: float
    top1: float | None = None
    top5: float | None = None

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def checkpoint_filename(self) -> str:
        return self.checkpoint_url.rsplit("/", 1)[1]

    def gf_sizes_for_input(self) -> list[tuple[int, int] | None]:
        """Global-filter shapes equal to the rfft2 spectrum of stages 3 and 4 at the input size."""
        if not self.global_filter:
            return [None] * 4
        s3, s4 = self.input_size // 16, self.input_size // 32
        return [None, None, (s3, s3 // 2 + 1), (s4, s4 // 2 + 1)]


_CROP_224 = Preprocessing(mode="resize_crop", input_size=224, resize_short=256)
_WARP_384 = Preprocessing(mode="warp", input_size=384)

VARIANTS: dict[str, Variant] = {}
_BUILDERS: dict[str, Callable[..., HorNet]] = {}
_ALIASES: dict[str, str] = {}


def _register(variant: Variant) -> Callable[[Callable[..., HorNet]], Callable[..., HorNet]]:
    def wrap(builder: Callable[..., HorNet]) -> Callable[..., HorNet]:
        VARIANTS[variant.id] = variant
        _BUILDERS[variant.id] = builder
        for name in (variant.id, *variant.aliases):
            _ALIASES[name] = variant.id
        return builder

    return wrap


def _build(variant_id: str, num_classes: int | None, gf_sizes: list[tuple[int, int] | None] | None) -> HorNet:
    variant = VARIANTS[variant_id]
    config = HorNetConfig(
        base_dim=variant.base_dim,
        gf_sizes=tuple(gf_sizes or variant.gf_sizes_for_input()),
        num_classes=num_classes or variant.default_classes,
    )
    return HorNet(config)


def _in1k(id_: str, alias: str, base_dim: int, gf: bool, params: int, gmacs: float, top1: float, top5: float, url: str):
    return Variant(
        id=id_, aliases=(alias,), base_dim=base_dim, global_filter=gf, preprocessing=_CROP_224,
        train_data="imagenet-1k", default_classes=1000, checkpoint_url=MMPRETRAIN_URL + url,
        params_1k=params, gmacs=gmacs, top1=top1, top5=top5,
    )  # fmt: skip


def _in22k(id_: str, alias: str, gf: bool, pre: Preprocessing, params: int, gmacs: float, url: str):
    return Variant(
        id=id_, aliases=(alias,), base_dim=192, global_filter=gf, preprocessing=pre,
        train_data="imagenet-22k", default_classes=IN22K_HORNET_CLASSES, checkpoint_url=MMPRETRAIN_URL + url,
        params_1k=params, gmacs=gmacs,
    )  # fmt: skip


@_register(_in1k("hornet-t", "hornet-tiny", 64, False, 22_409_512, 3.98, 82.84, 96.24,
                 "hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth"))  # fmt: skip
def hornet_t(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-t", num_classes, gf_sizes)


@_register(_in1k("hornet-t-gf", "hornet-tiny-gf", 64, True, 22_991_848, 3.90, 82.98, 96.38,
                 "hornet-tiny-gf_3rdparty_in1k_20220915-4c35a66b.pth"))  # fmt: skip
def hornet_t_gf(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-t-gf", num_classes, gf_sizes)


@_register(_in1k("hornet-s", "hornet-small", 96, False, 49_528_264, 8.83, 83.79, 96.75,
                 "hornet-small_3rdparty_in1k_20220915-5935f60f.pth"))  # fmt: skip
def hornet_s(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-s", num_classes, gf_sizes)


@_register(_in1k("hornet-s-gf", "hornet-small-gf", 96, True, 50_401_768, 8.71, 83.98, 96.77,
                 "hornet-small-gf_3rdparty_in1k_20220915-649ca492.pth"))  # fmt: skip
def hornet_s_gf(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-s-gf", num_classes, gf_sizes)


@_register(_in1k("hornet-b", "hornet-base", 128, False, 87_256_680, 15.59, 84.24, 96.94,
                 "hornet-base_3rdparty_in1k_20220915-a06176bb.pth"))  # fmt: skip
def hornet_b(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-b", num_classes, gf_sizes)


@_register(_in1k("hornet-b-gf", "hornet-base-gf", 128, True, 88_421_352, 15.42, 84.32, 96.95,
                 "hornet-base-gf_3rdparty_in1k_20220915-82c06fa7.pth"))  # fmt: skip
def hornet_b_gf(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-b-gf", num_classes, gf_sizes)


@_register(_in22k("hornet-l", "hornet-large", False, _CROP_224, 194_542_504, 34.83,
                  "hornet-large_3rdparty_in21k_20220909-9ccef421.pth"))  # fmt: skip
def hornet_l(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-l", num_classes, gf_sizes)


@_register(_in22k("hornet-l-gf", "hornet-large-gf", True, _CROP_224, 196_289_512, 34.58,
                  "hornet-large-gf_3rdparty_in21k_20220909-3aea3b61.pth"))  # fmt: skip
def hornet_l_gf(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-l-gf", num_classes, gf_sizes)


@_register(_in22k("hornet-l-gf384", "hornet-large-gf384", True, _WARP_384, 201_806_824, 101.63,
                  "hornet-large-gf384_3rdparty_in21k_20220909-80894290.pth"))  # fmt: skip
def hornet_l_gf384(num_classes: int | None = None, gf_sizes=None) -> HorNet:
    return _build("hornet-l-gf384", num_classes, gf_sizes)


class UnknownModelError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown HorNet variant {self.name!r}; known: {', '.join(VARIANTS)}"


def resolve_name(name: str) -> str:
    """The canonical id for an id or alias (exact match only: names are a whitelist)."""
    try:
        return _ALIASES[name]
    except (KeyError, TypeError):
        raise UnknownModelError(str(name)) from None


def get_variant(name: str) -> Variant:
    return VARIANTS[resolve_name(name)]


def get_builder(name: str) -> Callable[..., HorNet]:
    return _BUILDERS[resolve_name(name)]
