"""The one typed configuration: defaults < YAML file < environment (HORNET_SERVE_*) < CLI flags.

The same `Settings` object builds the running application (`service.app`) and the Serve config YAML
that `serve deploy` and KubeRay use (`service.serve_config`), so the two cannot drift apart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, InitSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from model import CompileMode, Precision, UnknownModelError, resolve_name
from service.http.errors import RETRY_AFTER_S

WeightsPolicy = Literal["auto", "required", "random"]
Device = Literal["auto", "cpu", "cuda"]
DecodeWhere = Literal["auto", "gateway", "replica"]
Topology = Literal["auto", "split", "colocated"]
ENV_PREFIX = "HORNET_SERVE_"
# Validation context key: the settings come from a Serve application's args (see _consistent).
LIVE_FIELDS_ELSEWHERE = "live_fields_elsewhere"
log = logging.getLogger("hornet-serve")


def choices(literal: Any) -> list[str]:
    """The values of a settings Literal, for a CLI flag's choices."""
    return list(get_args(literal))


def configure_logging() -> None:
    """The CLIs' log format (Ray's processes keep Ray's)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _model_id(name: str) -> str:
    try:
        return resolve_name(name)
    except UnknownModelError as exc:
        raise ValueError(str(exc)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiveBatchSettings(_Strict):
    """The batching a running replica changes without a restart (its `user_config`, see Classifier.reconfigure)."""

    max_batch_size: int = Field(8, ge=1, le=256)
    batch_wait_timeout_s: float = Field(0.02, ge=0, le=1)


class BatchSettings(LiveBatchSettings):
    """Batching of one classifier deployment (service/replica/batcher.py). The defaults are what `make bench` found
    fastest on CPU (docs/performance.md#measurements-behind-the-codes-settings); a request that finds the replica
    idle starts at once."""

    max_concurrent_batches: int = Field(2, ge=1, le=16)

    def live(self) -> LiveBatchSettings:
        return LiveBatchSettings.model_validate(self.model_dump(include=set(LiveBatchSettings.model_fields)))


class AutoscalingSettings(_Strict):
    """Serve's autoscaling of one deployment (its `autoscaling_config`). `min_replicas: 0` lets an idle variant go to
    zero replicas: its next request starts one (docs/scale-to-zero.md)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    initial_replicas: int | None = Field(
        None, ge=0, description="replicas at deploy time (default: min_replicas); 1 with min 0 proves the weights load"
    )
    target_ongoing_requests: float = Field(8, gt=0)
    upscale_delay_s: float = Field(30, ge=0, description="load above target this long adds replicas (not from zero)")
    downscale_delay_s: float = Field(600, ge=0, description="load below target this long removes replicas")
    downscale_to_zero_delay_s: float | None = Field(
        None, ge=0, description="no request this long takes the last replica away (default: downscale_delay_s)"
    )
    look_back_period_s: float = Field(30, gt=0, description="the window Serve averages the load over")
    metrics_interval_s: float = Field(
        10, gt=0, description="how often each gateway reports its load to Serve's autoscaler: a cold start's reaction"
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(f"initial_replicas ({initial}) is outside [{self.min_replicas}, {self.max_replicas}]")
        return self


class ClassifierSettings(_Strict):
    """Deployment settings of one variant's classifier."""

    num_replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingSettings | None = None
    num_cpus: float = Field(0.5, ge=0, description="Ray logical CPUs reserved per replica")
    num_gpus: float = Field(0, ge=0, le=1, description="GPU share per replica (1 or a fraction); 0 on CPU")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads of a batch that runs alone (overlapping batches share them); default: all cores",
    )
    precision: Precision = Field(
        "auto",
        description="auto: bf16 where the CPU (avx512_bf16/AMX) or GPU runs it fast, fp16 on older GPUs, else fp32",
    )
    channels_last: bool = True
    buckets: list[int] | None = Field(
        None, description="pad each batch up to the next of these sizes (GPU: fixed shapes)"
    )
    compile: CompileMode = Field("off", description="torch.compile each batch size at start-up")
    cuda_graphs: bool = Field(False, description="capture each batch size as a CUDA graph at start-up (GPU only)")
    decode: DecodeWhere = Field(
        "auto",
        description="where JPEG uploads are decoded: gateway (CPU), replica (on the model's device: nvJPEG on "
        "CUDA, every core before the batch's forward on CPU); auto: replica, measured faster on both",
    )
    batch: BatchSettings = BatchSettings()
    # Room for 4 batches per lane in the replica: requests beyond it wait in the gateway's router, which
    # re-probes the replicas while they wait and slows every request (docs/performance.md#measurements-behind-the-codes-settings).
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(64, ge=1)
    weights: str | None = Field(None, description="explicit checkpoint path or URL for this variant")
    labels_file: str | None = None
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources (placement)")

    def live(self) -> LiveClassifierSettings:
        return LiveClassifierSettings(batch=self.batch.live(), max_ongoing_requests=self.max_ongoing_requests,
                                      max_queued_requests=self.max_queued_requests)  # fmt: skip

    def check_batches_can_fill(self) -> None:
        needed = self.batch.max_batch_size * self.batch.max_concurrent_batches
        if self.max_ongoing_requests < needed:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) is below max_batch_size x "
                f"max_concurrent_batches ({self.batch.max_batch_size} x {self.batch.max_concurrent_batches} = "
                f"{needed}): batches could never fill"
            )


class LiveClassifierSettings(_Strict):
    """What a colocated variant changes on the running gateway replicas: its part of the gateway's `user_config` (split,
    Serve applies the same fields to the variant's own deployment)."""

    batch: LiveBatchSettings
    max_ongoing_requests: int = Field(ge=1)
    max_queued_requests: int = Field(ge=1)


# What a variant's classifier can only have as a deployment of its own (topology split).
_OWN_DEPLOYMENT: dict[str, Callable[[ClassifierSettings], bool]] = {
    "num_replicas": lambda cfg: cfg.num_replicas != 1,
    "autoscaling": lambda cfg: cfg.autoscaling is not None,
    "resources": lambda cfg: bool(cfg.resources),
}


def _own_deployment_fields(cfg: ClassifierSettings) -> list[str]:
    return [name for name, needs in _OWN_DEPLOYMENT.items() if needs(cfg)]


def _check_colocatable(model_id: str, cfg: ClassifierSettings) -> None:
    """Colocated, a variant has no deployment of its own: what would scale or place one is refused, not ignored."""
    if own := _own_deployment_fields(cfg):
        raise ValueError(
            f"topology colocated: {model_id} sets {', '.join(own)}, but its classifier runs inside the gateway's "
            "replicas: scale and place the gateway instead, or set topology: split"
        )


class GatewaySettings(_Strict):
    num_replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingSettings | None = None
    num_cpus: float = Field(0.25, ge=0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=1)
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources (placement)")
    decode_threads: int = Field(2, ge=1, description="threads decoding images per gateway replica")
    decode_queue: int = Field(32, ge=0, description="uploads waiting for a decode thread per replica; more: 503")
    heavy_decode_pixels: int = Field(
        4_000_000, ge=1, description="uploads decoding more pixels than this take the heavy lane"
    )
    heavy_decode_threads: int = Field(1, ge=1, description="threads of the heavy lane per replica")
    heavy_decode_queue: int = Field(8, ge=0, description="uploads waiting for the heavy lane per replica; more: 503")
    heavy_decode_nice: int = Field(
        10, ge=0, le=19, description="niceness added to the heavy lane: costly images yield the CPU to the rest"
    )


class Limits(_Strict):
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    max_top_k: int = Field(100, ge=1)
    max_batch_images: int = Field(32, ge=1, le=1024, description="images one /v2 infer request may carry; more: 413")
    # On by default, with margin 2: the replica path's fidelity at 3-9x less decode for a phone photo
    # (docs/performance.md#decode-fidelity).
    jpeg_draft: bool = Field(
        True,
        description="the fast decode: big JPEGs at reduced DCT scale, every image resized from its crop's region "
        "only (changes pixels; off: the authors' pipeline bit for bit)",
    )
    jpeg_draft_margin: float = Field(
        2.0,
        ge=1.0,
        le=8.0,
        description="with jpeg_draft: the reduced JPEG keeps both sides at least this multiple of the resize "
        "input (1: as small as that allows; 2 decodes a 4000x3000 photo at 1000x750 for a 224 model)",
    )
    decode_budget: dict[Literal["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"], int] = Field(
        default_factory=dict,
        description="pixels one upload may decode, by format: overrides of model.preprocess.DECODE_BUDGET",
    )
    max_header_bytes: int = Field(16384, ge=1024, description="request headers over this many bytes: 431")


class Timeouts(_Strict):
    inference_s: float = Field(30, gt=0, description="gateway waits this long for a classifier: then 504")
    retry_after_s: int = Field(RETRY_AFTER_S, ge=1, description="Retry-After on 503")
    decode_s: float = Field(5, gt=0, description="one image's decode time limit: then 413")
    cold_start_s: float = Field(
        120,
        gt=0,
        description="a request to a variant at zero replicas waits this long (from its arrival, at least inference_s) "
        "for the cold start: then 503 with Retry-After",
    )
    body_read_s: float = Field(60, gt=0, description="the whole request body must arrive within this: then 408")


class AuthSettings(_Strict):
    """Optional API keys (`Authorization: Bearer <key>`) with a token bucket per key in each gateway replica."""

    enabled: bool = False
    keys_file: str | None = Field(
        None, description="lines `<key id> <sha256 hex of the key>` (e.g. a mounted Kubernetes Secret)"
    )
    rate_per_s: float | None = Field(20, gt=0, description="requests per second per key and gateway replica")
    burst: int = Field(40, ge=1, description="requests a key may send at once")

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> AuthSettings:
        if self.enabled and not self.keys_file:
            raise ValueError("auth.enabled needs auth.keys_file (see `python -m service.http.auth --help`)")
        return self


class VariantSettings(_Strict):
    """What one variant's classifier replicas are built with: that variant's settings, nothing else."""

    model_id: str
    device: Device
    weights_policy: WeightsPolicy
    checkpoint_dir: str | None
    classifier: ClassifierSettings
    limits: Limits = Field(description="the gateway's limits: max_top_k, and the replica's own CPU decode")
    decode_time_limit_s: float = Field(gt=0)


class Settings(_Strict):
    models: list[str] = Field(default_factory=lambda: ["hornet-t", "hornet-l-gf384"])
    default_model: str | None = None
    weights_policy: WeightsPolicy = "auto"
    checkpoint_dir: str | None = None
    device: Device = "auto"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="KServe's gRPC inference service, on the API's host (as Triton's); 0: off"
    )
    metrics_export_port: int = Field(8080, ge=1, le=65535)
    app_name: str = "hornet"
    topology: Topology = Field(
        "auto",
        description="split: a Serve deployment per variant behind the gateway's; colocated: the classifiers run "
        "inside each gateway replica, no hop between them (docs/performance.md#colocated); auto: colocated unless "
        "a variant needs a deployment of its own (replicas, autoscaling, resources, a GPU)",
    )
    classifier: ClassifierSettings = ClassifierSettings()
    per_model: dict[str, dict[str, Any]] = Field(default_factory=dict, description="overrides by variant id")
    gateway: GatewaySettings = GatewaySettings()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    auth: AuthSettings = AuthSettings()

    @field_validator("models")
    @classmethod
    def _known_models(cls, names: list[str]) -> list[str]:
        ids = [_model_id(n) for n in names]
        if not ids:
            raise ValueError("enable at least one model")
        if len(set(ids)) != len(ids):
            raise ValueError(f"a model is enabled twice: {names}")
        return ids

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
        if self.grpc_port == self.port:
            raise ValueError(f"grpc_port and port are both {self.port}: give gRPC another port, or 0 to turn it off")
        if self.default_model is not None and _model_id(self.default_model) not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among the enabled models {self.models}")
        for name in self.per_model:
            if _model_id(name) not in self.models:  # e.g. `--models hornet-t` on a config tuned for more
                log.info("per_model settings for %r ignored: that model is not enabled (%s)", name, self.models)
        # The application's args leave out what Serve applies live (service.serve_config.LIVE), so there the
        # replica limits are not known: the deployments' entries carry them.
        live_known = LIVE_FIELDS_ELSEWHERE not in (info.context or {})
        for model_id in self.models:
            cfg = self.classifier_for(model_id)  # validates each merged variant's settings
            if live_known:
                cfg.check_batches_can_fill()
            if cfg.cuda_graphs and self.device == "cpu":
                raise ValueError(f"{model_id}: cuda_graphs needs device cuda (or auto on a GPU node)")
            if self.device == "cuda" and cfg.num_gpus == 0:
                raise ValueError(f"device=cuda but {model_id} reserves num_gpus=0: Ray hides GPUs from such replicas")
            if self.topology == "colocated":
                _check_colocatable(model_id, cfg)
        if self.topology == "colocated" and sum(self.classifier_for(m).num_gpus for m in self.models) > 1:
            raise ValueError("topology colocated: the variants' num_gpus add up to more than the one GPU of a replica")
        return self

    @property
    def colocated(self) -> bool:
        """Whether each gateway replica runs the classifiers itself. `auto` is measured on CPU (docs/performance.md#
        colocated): colocated where every variant is one replica with no placement or GPU of its own."""
        if self.topology != "auto":
            return self.topology == "colocated"
        # A GPU: colocated takes one when asked, but `auto` keeps GPU variants split (measured on CPU only).
        variants = [self.classifier_for(m) for m in self.models]
        return not any(cfg.num_gpus > 0 or _own_deployment_fields(cfg) for cfg in variants)

    @property
    def default_model_id(self) -> str:
        return resolve_name(self.default_model) if self.default_model else self.models[0]

    def variant(self, model_id: str) -> VariantSettings:
        return VariantSettings(
            model_id=model_id,
            device=self.device,
            weights_policy=self.weights_policy,
            checkpoint_dir=self.checkpoint_dir,
            classifier=self.classifier_for(model_id),
            limits=self.limits,
            decode_time_limit_s=self.timeouts.decode_s,
        )

    def classifier_for(self, model_id: str) -> ClassifierSettings:
        """`classifier` merged with the variant's `per_model` overrides, section by section; its `resources` (where
        it runs) replace the common ones whole, so a variant can be placed on another worker group."""
        overrides = next((v for k, v in self.per_model.items() if resolve_name(k) == model_id), {})
        common = self.classifier.model_dump(exclude={"resources"} if "resources" in overrides else set())
        return ClassifierSettings.model_validate(_deep_merge(common, overrides))


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _deep_merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
        )
    return merged


class _YamlEnvironment(EnvSettingsSource):
    """HORNET_SERVE_* variables read from `environ` (not necessarily os.environ). List and dict values are YAML
    (JSON is YAML): `HORNET_SERVE_MODELS="[hornet-t]"`. A HORNET_SERVE_* name that is no setting is kept, so
    validation refuses it by name, as it refuses a typo in the YAML file; HORNET_SERVE_CONFIG names that file."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base class calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"not YAML: {value!r}") from exc  # pydantic-settings names the field

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        prefix = ENV_PREFIX.lower()
        for name, value in self.env_vars.items():
            key = name[len(prefix) :]
            if name.startswith(prefix) and key != "config" and key.split("__")[0] not in self.settings_cls.model_fields:
                data[key] = value  # refused by extra="forbid", which names it
        return data


class LoadedSettings(BaseSettings, Settings):
    """`Settings` from their sources: defaults < YAML file < HORNET_SERVE_* environment < CLI flags."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_parse_none_str="null")


def _read_yaml(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the settings file holds {type(data).__name__}, not a mapping of settings")
    return data


def load_settings(
    path: str | Path | None = None,
    cli_overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Settings:
    """Defaults, then the YAML file (`path` or $HORNET_SERVE_CONFIG), then HORNET_SERVE_* variables, then CLI flags."""
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    cli = cli_overrides or {}
    sources = (  # highest priority first
        InitSettingsSource(LoadedSettings, init_kwargs=cli),
        _YamlEnvironment(LoadedSettings, environ),
        InitSettingsSource(LoadedSettings, init_kwargs=_read_yaml(path) if path else {}),
    )
    loaded = LoadedSettings(_build_sources=(sources, cli))
    # Validated above (a LoadedSettings is a Settings); hand back a plain Settings, which compares equal to others.
    return Settings.model_construct(loaded.model_fields_set, **dict(loaded))
