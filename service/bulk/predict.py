"""The bulk job's model stage: a Ray Data actor holding one `BatchPredictor`, the same model, weights policy and
labels as a classifier replica of the online service, and its batch preparation (service/replica/jpeg.py): the
decode stage's pixels, or JPEGs decoded together on the actor's device."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from model import ImageTooLargeError, get_variant
from model.labels import for_head
from service.bulk.decode import INVALID_IMAGE, TOO_LARGE
from service.bulk.job import BulkJob
from service.bulk.output import RESULT_SCHEMA
from service.decoding import DecodeRules
from service.replica.jpeg import EncodedJpeg, Prepared, prepare_batch
from service.replica.predictor import load_predictor
from service.replica.torch_lanes import TorchLanes


class BulkPredictor:
    """Callable class for `Dataset.map_batches`: {path, pixels, error_type, error} -> result rows (RESULT_SCHEMA).
    Rows that already carry an error skip the model and keep their error."""

    def __init__(self, job: BulkJob) -> None:
        self.job = job
        self.recipe = get_variant(job.model_id).preprocessing
        self.rules = DecodeRules.for_variant(job.variant)
        # Load and every forward on one thread with all the actor's torch threads (see service/replica/torch_lanes.py:
        # a forward on another thread than the loader's would start a second OpenMP team).
        self._lanes = TorchLanes(1, job.cpu_threads)
        self._lanes.run_setup(self._load)

    def _load(self) -> None:
        loaded = load_predictor(self.job.variant, self.job.precision)
        self.predictor = loaded.predictor
        self.labels = for_head(loaded.num_classes, self.job.variant.classifier.labels_file)
        self.weights = loaded.weights_status
        self.weights_source = loaded.weights.description

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["path"])
        error_types, errors = list(batch["error_type"]), list(batch["error"])
        rows = [i for i in range(n) if not error_types[i]]
        indices = np.zeros((n, self.job.top_k), dtype=np.int64)
        scores = np.zeros((n, self.job.top_k), dtype=np.float32)
        if rows:
            items = [EncodedJpeg(batch["jpeg"][i], int(batch["orientation"][i])) if batch["jpeg"][i]
                     else batch["pixels"][i] for i in rows]  # fmt: skip
            prepared, top = self._lanes.run_setup(lambda: self._predict(items))
            for position, exc in prepared.failed.items():  # JPEGs that no decoder takes: error rows, alone
                error_types[rows[position]] = TOO_LARGE if isinstance(exc, ImageTooLargeError) else INVALID_IMAGE
                errors[rows[position]] = str(exc)
            rows = [i for position, i in enumerate(rows) if position not in prepared.failed]
            if rows:
                indices[rows], scores[rows] = top
        ok = np.array([not e for e in error_types], dtype=bool)
        labels = [[self.labels[int(i)] for i in row] for row in indices]
        columns = {
            "path": [str(p) for p in batch["path"]],
            "class_indices": [row.tolist() if good else None for row, good in zip(indices, ok, strict=True)],
            "wnids": [[lb.wnid for lb in row] if good else None for row, good in zip(labels, ok, strict=True)],
            "labels": [[lb.name for lb in row] if good else None for row, good in zip(labels, ok, strict=True)],
            "scores": [row.tolist() if good else None for row, good in zip(scores, ok, strict=True)],
            "model": [self.job.model_id] * n,
            "weights": [self.weights] * n,
            "weights_source": [self.weights_source] * n,
            "precision": [self.predictor.precision] * n,
            "error_type": [str(e) or None for e in error_types],
            "error": [str(e) or None for e in errors],
        }
        return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA)

    def _predict(self, items: list[np.ndarray | EncodedJpeg]) -> tuple[Prepared, tuple[np.ndarray, np.ndarray] | None]:
        prepared = prepare_batch(items, self.recipe, self.predictor.device, self.rules)
        top = self.predictor.predict(prepared.pixels, self.job.top_k) if len(prepared.pixels) else None
        return prepared, top
