"""One bulk run's settings: the model's from the service config (precision, batch size, weights, limits), with
the command line's overrides, and the Ray resources of each stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.config import Precision, Settings, VariantSettings


class BulkJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: VariantSettings = Field(
        description="the model, its device, weights policy, classifier settings and the gateway's limits"
    )
    top_k: int = Field(ge=1)
    precision: Precision
    batch_size: int = Field(ge=1, description="images per model call")
    cpu_threads: int | None = Field(None, ge=1, description="torch threads per actor on the CPU; default: all cores")
    concurrency: int = Field(ge=1, description="model actors")
    num_gpus: float = Field(ge=0, description="GPU share per model actor")
    actor_cpus: float = Field(gt=0, description="Ray logical CPUs per model actor")
    decode_cpus: float = Field(gt=0, description="Ray logical CPUs per read+decode task")
    decode_batch_size: int = Field(ge=1, description="inputs per read+decode task")
    part_rows: int = Field(ge=1, description="results per output part: a killed run loses at most the unwritten ones")

    @model_validator(mode="after")
    def _consistent(self) -> BulkJob:
        if self.top_k > self.variant.limits.max_top_k:
            raise ValueError(f"top_k {self.top_k} is above limits.max_top_k ({self.variant.limits.max_top_k})")
        if self.variant.device == "cuda" and self.num_gpus == 0:
            raise ValueError("device=cuda needs num_gpus > 0 per actor: Ray hides GPUs from actors without them")
        return self

    @property
    def model_id(self) -> str:
        return self.variant.model_id

    @property
    def device_decodes(self) -> bool:
        """JPEGs are decoded by the model actors on their device: `classifier.decode` replica, or auto on GPUs
        (on CPU nodes the pipeline's own decode tasks take every core the actors leave)."""
        decode = self.variant.classifier.decode
        return decode == "replica" or (decode == "auto" and self.num_gpus > 0)

    @property
    def cpus_needed(self) -> float:
        """Logical CPUs the pipeline needs to make progress: every model actor plus one decode task."""
        return self.concurrency * self.actor_cpus + self.decode_cpus


def make_job(
    settings: Settings,
    model_id: str,
    cluster_gpus: float,
    overrides: dict[str, object],
) -> BulkJob:
    """The variant's settings, then `overrides` (CLI flags that were given). On GPUs (device cuda, or auto on a
    cluster that has them) each actor takes one GPU and there is one actor per GPU unless told otherwise."""
    device = overrides.get("device") or settings.device
    variant = VariantSettings.model_validate({**settings.variant(model_id).model_dump(), "device": device})
    cfg = variant.classifier
    use_gpu = device == "cuda" or (device == "auto" and cluster_gpus > 0)
    num_gpus = float(overrides.get("num_gpus") or (1.0 if use_gpu else 0.0))  # type: ignore[arg-type]
    gpu_actors = max(1, int(cluster_gpus // num_gpus)) if use_gpu and num_gpus else 1
    values: dict[str, object] = {
        "variant": variant,
        "top_k": 5,
        "precision": cfg.precision,
        "batch_size": cfg.batch.max_batch_size,
        "cpu_threads": cfg.cpu_threads,
        "concurrency": gpu_actors,
        "num_gpus": num_gpus,
        "actor_cpus": 1.0,
        "decode_cpus": 0.5,
        "decode_batch_size": 16,
        "part_rows": 1024,
    }
    values.update({k: v for k, v in overrides.items() if v is not None and k not in ("device", "num_gpus")})
    return BulkJob.model_validate(values)
