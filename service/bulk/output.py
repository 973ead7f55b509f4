"""The bulk job's output: a Parquet dataset directory written in parts, each part appearing whole or not at all.

A part is written under a temporary name and then renamed, so a killed run leaves only whole parts (plus
temporary files, removed by the next run) and a rerun skips every input already in a part: nothing is redone,
nothing is written twice. Each part records the model and top-k in its metadata, so a rerun with another model
cannot mix its results into the same output.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from service.bulk.inputs import resolve

RESULT_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("class_indices", pa.list_(pa.int64())),
        pa.field("wnids", pa.list_(pa.string())),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float32())),
        pa.field("model", pa.string(), nullable=False),
        pa.field("weights", pa.string(), nullable=False),
        pa.field("weights_source", pa.string(), nullable=False),
        pa.field("precision", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("error", pa.string()),
    ]
)
META_KEY = b"hornet.bulk"
PART_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"


class OutputMismatch(ValueError):
    """The output already holds results of another model or top-k."""


@dataclass
class Existing:
    """What earlier runs left in the output."""

    done: set[str] = field(default_factory=set)
    failed: int = 0
    removed_tmp: int = 0


def read_existing(out: str, model_id: str, top_k: int) -> Existing:
    """Inputs already in `out`'s parts; removes temporary files of killed runs."""
    fs, root = resolve(out)
    existing = Existing()
    wanted = {"model": model_id, "top_k": top_k}
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.path.endswith(TMP_SUFFIX):
            fs.delete_file(info.path)
            existing.removed_tmp += 1
        elif info.path.endswith(PART_SUFFIX):
            with fs.open_input_file(info.path) as f:
                part = pq.ParquetFile(f)
                meta = json.loads((part.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
                if meta != wanted:
                    raise OutputMismatch(f"{out} holds results for {meta or 'something else'} (part {info.base_name}); "
                                         f"this run is {wanted}: choose another --out")  # fmt: skip
                table = part.read(columns=["path", "error_type"])
            existing.done.update(table.column("path").to_pylist())
            existing.failed += len(table) - table.column("error_type").null_count
    return existing


class PartWriter:
    """Buffers result rows and writes a part every `part_rows` rows (and whatever is left at `close`)."""

    def __init__(self, out: str, model_id: str, top_k: int, part_rows: int) -> None:
        self.fs, self.root = resolve(out)
        self.fs.create_dir(self.root, recursive=True)
        self.part_rows = part_rows
        self.schema = RESULT_SCHEMA.with_metadata({META_KEY: json.dumps({"model": model_id, "top_k": top_k})})
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.parts = 0
        self.rows = 0
        self.failed = 0

    def add(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += len(table)
        if self._buffered >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer).cast(self.schema)
        name = f"{self.root}/part-{self._run}-{self.parts:06d}"
        pq.write_table(table, name + TMP_SUFFIX, filesystem=self.fs)
        self.fs.move(name + TMP_SUFFIX, name + PART_SUFFIX)  # the commit: the part is complete or absent
        self.parts += 1
        self.rows += len(table)
        self.failed += len(table) - table.column("error_type").null_count
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self.flush()
