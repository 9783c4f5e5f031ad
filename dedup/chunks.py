"""Work units of the dedup and decontaminate steps: runs of whole row groups of one Parquet file,
and the node ids that name a document by its chunk and its row in the chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webtext.core import storage
from webtext.core.stage import Stage, conform_input

CHUNK_ROWS = 50_000  # documents per task (row groups are never split)
ROW_BITS = np.uint64(32)  # a node id is (chunk << ROW_BITS) | row
ROW_MASK = np.uint64((1 << 32) - 1)


@dataclass(frozen=True)
class Chunk:
    index: int
    file: str
    row_groups: tuple[int, ...]


def chunks(files: list[str], rows_per_chunk: int | None = None) -> list[Chunk]:
    rows_per_chunk = rows_per_chunk or CHUNK_ROWS
    out: list[Chunk] = []
    for f in files:
        meta = storage.parquet_metadata(f)
        group: list[int] = []
        rows = 0
        for rg in range(meta.num_row_groups):
            if group and rows + meta.row_group(rg).num_rows > rows_per_chunk:
                out.append(Chunk(len(out), f, tuple(group)))
                group, rows = [], 0
            group.append(rg)
            rows += meta.row_group(rg).num_rows
        out.append(Chunk(len(out), f, tuple(group)))
    return out


def read(stage: Stage, chunk: Chunk, columns: list[str] | None = None) -> pa.Table:
    """The chunk's rows (all columns, or `columns` where present), conformed to the stage's inputs."""
    with storage.open_input(chunk.file) as f:
        pf = pq.ParquetFile(f)
        wanted = [c for c in columns if c in pf.schema_arrow.names] if columns else None
        if chunk.row_groups:
            table = pf.read_row_groups(list(chunk.row_groups), columns=wanted)
        else:
            table = pf.schema_arrow.empty_table().select(wanted) if wanted else pf.schema_arrow.empty_table()
    return conform_input(stage, table)


def node_ids(chunk: int, rows: np.ndarray) -> np.ndarray:
    """uint64 ids of a chunk's rows, chunk index above row: one integer names a document across
    the dedup steps, and its chunk (where its data lives) is a shift away."""
    return (np.uint64(chunk) << ROW_BITS) | rows.astype(np.uint64)


def chunk_of(nodes: np.ndarray) -> np.ndarray:
    return (nodes.astype(np.uint64) >> ROW_BITS).astype(np.int64)


def row_of(nodes: np.ndarray) -> np.ndarray:
    return (nodes.astype(np.uint64) & ROW_MASK).astype(np.int64)
