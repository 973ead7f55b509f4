"""HorNet image classifiers in pure PyTorch: the nine variants, checkpoints, labels, preprocessing."""

from model.buckets import default_buckets
from model.checkpoint import CheckpointError
from model.factory import create_model
from model.hornet import HorNet, HorNetConfig, set_fused_layernorm
from model.inference import BatchPredictor, CompileMode, pick_device
from model.labels import Label, LabelSet
from model.precision import ConcretePrecision, Precision, resolve_precision
from model.preprocess import ImageDecodeError, ImageTooLargeError, decode, normalize, preprocess, resize, to_rgb
from model.registry import VARIANTS, Preprocessing, UnknownModelError, Variant, get_variant, resolve_name

__all__ = [
    "VARIANTS",
    "BatchPredictor",
    "CheckpointError",
    "CompileMode",
    "ConcretePrecision",
    "HorNet",
    "HorNetConfig",
    "ImageDecodeError",
    "ImageTooLargeError",
    "Label",
    "LabelSet",
    "Precision",
    "Preprocessing",
    "UnknownModelError",
    "Variant",
    "create_model",
    "decode",
    "default_buckets",
    "get_variant",
    "normalize",
    "pick_device",
    "preprocess",
    "resize",
    "resolve_precision",
    "resolve_name",
    "set_fused_layernorm",
    "to_rgb",
]
