"""HorNet image classifiers in pure PyTorch: the nine variants, checkpoints, labels, preprocessing."""

from model.checkpoint import CheckpointError
from model.factory import create_model
from model.hornet import HorNet, HorNetConfig, set_fused_layernorm
from model.inference import BatchPredictor, CompileMode, pick_device
from model.labels import LabelSet
from model.precision import ConcretePrecision, Precision, resolve_precision
from model.preprocess import ImageDecodeError, ImageTooLargeError, decode, normalize, preprocess, resize
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
    "LabelSet",
    "Precision",
    "Preprocessing",
    "UnknownModelError",
    "Variant",
    "create_model",
    "decode",
    "get_variant",
    "normalize",
    "pick_device",
    "preprocess",
    "resize",
    "resolve_precision",
    "resolve_name",
    "set_fused_layernorm",
]
