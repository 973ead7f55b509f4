"""Response bodies of the HTTP API (they also document it in /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WeightsStatus = Literal["checkpoint", "random-init"]
DecodeSite = Literal["gateway", "replica"]


class Prediction(BaseModel):
    rank: int = Field(description="1 = most likely")
    class_index: int
    wnid: str | None = Field(description="WordNet id, when the label set has one")
    label: str
    score: float = Field(description="softmax probability")


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[Prediction]
    weights: WeightsStatus
    request_id: str


class ModelInfo(BaseModel):
    """What a classifier replica reports about the model it loaded (or why it could not)."""

    id: str
    ready: bool
    reason: str | None = None
    num_classes: int = 0
    params: int = 0
    weights: WeightsStatus | None = None
    weights_source: str | None = None
    device: str | None = None
    precision: str
    labels_file: str | None = None
    decode: DecodeSite = "gateway"


class ModelCard(BaseModel):
    id: str
    aliases: list[str]
    input_size: int
    params: int | None
    gmacs: float
    top1: float | None
    top5: float | None
    train_data: str
    classes: int | None
    label_set: str | None
    weights: WeightsStatus | None
    weights_source: str | None
    device: str | None
    precision: str | None
    decode: DecodeSite | None = Field(
        description="where JPEG uploads are decoded: gateway (CPU) or replica (on the model's device)"
    )
    replicas: int = Field(description="running replicas")
    cold: bool = Field(description="at zero replicas by the autoscaler's choice: the next request starts one")
    ready: bool = Field(description="servable: loaded and answering, or cold")
    not_ready_reason: str | None = None
    default: bool


class ModelList(BaseModel):
    models: list[ModelCard]
    default: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class OipError(BaseModel):
    """The Open Inference Protocol's error body (/v2)."""

    error: str
