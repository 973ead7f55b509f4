"""The nine HorNet variants: one table of their metadata (the model-card facts of docs/model.md#variants) and
a builder each, timm/torchvision style (`hornet_t()`, ..., or `get_builder(name)`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from model.hornet import HorNet, HorNetConfig

MMPRETRAIN_URL = "https://download.openmmlab.com/mmclassification/v0/hornet/"
IN22K_HORNET_CLASSES = 10459  # docs/model.md#imagenet-22k-label-order

TrainData = Literal["imagenet-1k", "imagenet-22k"]
IN1K: TrainData = "imagenet-1k"
IN22K: TrainData = "imagenet-22k"
_DEFAULT_CLASSES: dict[TrainData, int] = {IN1K: 1000, IN22K: IN22K_HORNET_CLASSES}

GfSizes = list[tuple[int, int] | None]


class Preprocessing(BaseModel):
    """The evaluation resize recipe (docs/model.md#preprocessing). `resize_crop`: short side to
    `resize_short` (bicubic), centre crop `input_size`. `warp`: bicubic resize straight to `input_size`^2."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["resize_crop", "warp"]
    input_size: int
    resize_short: int | None = None
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)


class Variant(BaseModel):
    """One variant's shape and model card. `params_1k` is the parameter count with a 1000-class head."""

    model_config = ConfigDict(frozen=True)

    id: str
    aliases: tuple[str, ...]
    base_dim: int
    global_filter: bool
    preprocessing: Preprocessing
    train_data: TrainData
    default_classes: int
    checkpoint_url: str
    params_1k: int
    gmacs: float
    top1: float | None = None
    top5: float | None = None

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def checkpoint_filename(self) -> str:
        return self.checkpoint_url.rsplit("/", 1)[1]

    def gf_sizes_for_input(self) -> GfSizes:
        """Global-filter shapes equal to the rfft2 spectrum of stages 3 and 4 at the input size."""
        if not self.global_filter:
            return [None] * 4
        s3, s4 = self.input_size // 16, self.input_size // 32
        return [None, None, (s3, s3 // 2 + 1), (s4, s4 // 2 + 1)]


_CROP_224 = Preprocessing(mode="resize_crop", input_size=224, resize_short=256)
_WARP_384 = Preprocessing(mode="warp", input_size=384)


def _row(
    *,
    id: str,
    alias: str,
    base_dim: int,
    global_filter: bool,
    preprocessing: Preprocessing,
    train_data: TrainData,
    params_1k: int,
    gmacs: float,
    top1: float | None,
    top5: float | None,
    checkpoint: str,
) -> Variant:
    """One table row: `checkpoint` is the file name on the mmpretrain server, the head follows `train_data`."""
    return Variant(
        id=id,
        aliases=(alias,),
        base_dim=base_dim,
        global_filter=global_filter,
        preprocessing=preprocessing,
        train_data=train_data,
        default_classes=_DEFAULT_CLASSES[train_data],
        checkpoint_url=MMPRETRAIN_URL + checkpoint,
        params_1k=params_1k,
        gmacs=gmacs,
        top1=top1,
        top5=top5,
    )


# fmt: off
_TABLE = (
    _row(id="hornet-t",       alias="hornet-tiny",        base_dim=64,  global_filter=False, preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=22_409_512,  gmacs=3.98,   top1=82.84, top5=96.24,
         checkpoint="hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth"),
    _row(id="hornet-t-gf",    alias="hornet-tiny-gf",     base_dim=64,  global_filter=True,  preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=22_991_848,  gmacs=3.90,   top1=82.98, top5=96.38,
         checkpoint="hornet-tiny-gf_3rdparty_in1k_20220915-4c35a66b.pth"),
    _row(id="hornet-s",       alias="hornet-small",       base_dim=96,  global_filter=False, preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=49_528_264,  gmacs=8.83,   top1=83.79, top5=96.75,
         checkpoint="hornet-small_3rdparty_in1k_20220915-5935f60f.pth"),
    _row(id="hornet-s-gf",    alias="hornet-small-gf",    base_dim=96,  global_filter=True,  preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=50_401_768,  gmacs=8.71,   top1=83.98, top5=96.77,
         checkpoint="hornet-small-gf_3rdparty_in1k_20220915-649ca492.pth"),
    _row(id="hornet-b",       alias="hornet-base",        base_dim=128, global_filter=False, preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=87_256_680,  gmacs=15.59,  top1=84.24, top5=96.94,
         checkpoint="hornet-base_3rdparty_in1k_20220915-a06176bb.pth"),
    _row(id="hornet-b-gf",    alias="hornet-base-gf",     base_dim=128, global_filter=True,  preprocessing=_CROP_224,
         train_data=IN1K,  params_1k=88_421_352,  gmacs=15.42,  top1=84.32, top5=96.95,
         checkpoint="hornet-base-gf_3rdparty_in1k_20220915-82c06fa7.pth"),
    _row(id="hornet-l",       alias="hornet-large",       base_dim=192, global_filter=False, preprocessing=_CROP_224,
         train_data=IN22K, params_1k=194_542_504, gmacs=34.83,  top1=None,  top5=None,
         checkpoint="hornet-large_3rdparty_in21k_20220909-9ccef421.pth"),
    _row(id="hornet-l-gf",    alias="hornet-large-gf",    base_dim=192, global_filter=True,  preprocessing=_CROP_224,
         train_data=IN22K, params_1k=196_289_512, gmacs=34.58,  top1=None,  top5=None,
         checkpoint="hornet-large-gf_3rdparty_in21k_20220909-3aea3b61.pth"),
    _row(id="hornet-l-gf384", alias="hornet-large-gf384", base_dim=192, global_filter=True,  preprocessing=_WARP_384,
         train_data=IN22K, params_1k=201_806_824, gmacs=101.63, top1=None,  top5=None,
         checkpoint="hornet-large-gf384_3rdparty_in21k_20220909-80894290.pth"),
)
# fmt: on

VARIANTS: dict[str, Variant] = {v.id: v for v in _TABLE}
_ALIASES: dict[str, str] = {name: v.id for v in _TABLE for name in (v.id, *v.aliases)}
_BUILDERS: dict[str, Callable[..., HorNet]] = {}


def _builder(fn: Callable[..., HorNet]) -> Callable[..., HorNet]:
    """Register `fn` as the builder of the variant its name spells (`hornet_l_gf384` -> `hornet-l-gf384`)."""
    variant_id = fn.__name__.replace("_", "-")
    if variant_id not in VARIANTS:
        raise KeyError(f"builder {fn.__name__} has no row in the variant table")
    _BUILDERS[variant_id] = fn
    return fn


def _build(variant: Variant, num_classes: int | None, gf_sizes: GfSizes | None) -> HorNet:
    config = HorNetConfig(
        base_dim=variant.base_dim,
        gf_sizes=tuple(gf_sizes or variant.gf_sizes_for_input()),
        num_classes=num_classes or variant.default_classes,
    )
    return HorNet(config)


@_builder
def hornet_t(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-t"], num_classes, gf_sizes)


@_builder
def hornet_t_gf(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-t-gf"], num_classes, gf_sizes)


@_builder
def hornet_s(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-s"], num_classes, gf_sizes)


@_builder
def hornet_s_gf(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-s-gf"], num_classes, gf_sizes)


@_builder
def hornet_b(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-b"], num_classes, gf_sizes)


@_builder
def hornet_b_gf(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-b-gf"], num_classes, gf_sizes)


@_builder
def hornet_l(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-l"], num_classes, gf_sizes)


@_builder
def hornet_l_gf(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-l-gf"], num_classes, gf_sizes)


@_builder
def hornet_l_gf384(num_classes: int | None = None, gf_sizes: GfSizes | None = None) -> HorNet:
    return _build(VARIANTS["hornet-l-gf384"], num_classes, gf_sizes)


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
