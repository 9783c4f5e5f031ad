"""Writing the final shards: a distributed, bounded-memory step with deterministic output.

Two steps of the stage (a run killed in the second resumes there):

1. Scatter (one task per input file): documents are read in chunks of at most `CHUNK_BYTES`, each
   row is given the bucket `xxh64(id) mod B`, and each chunk is written to scratch sorted by bucket,
   one row group per bucket. Results are the rows per bucket; the driver stores them as one small
   matrix (scratch files x buckets) in the step's folder (`plan.npz`), never a row.
2. Gather (one task per bucket): the bucket's row groups (located from the plan) are read from every scratch file, sorted by
   id (ties by url, text), duplicate ids dropped (`duplicate_id`), and written as one or more shard
   files of at most `max_rows_per_shard` rows (row groups of `row_group_rows`). A bucket holds about
   `FILL * max_rows_per_shard` rows, so one task holds at most about one shard.
   Then the dataset card `README.md`, then `manifest.json` (the last file: rows, bytes and sha256 of
   every shard; the funnel; the build config; library versions).

File names (`data/shard-00003-of-00012.parquet`) and contents depend only on the input rows and the
config: the bucket count and each bucket's file count come from the row counts, not from timing.
Every file is written under a temporary name and renamed (or published complete on object stores).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from webtext.core import storage
from webtext.core.config import ShardConfig
from webtext.core.manifest import DATA, MANIFEST
from webtext.core.schemas import OVERLAP_REPORT, OVERLAP_TABLE, SCHEMA_VERSION, SHARD, conform
from webtext.core.stage import AccountingError, InputError, Resources, Step, StepContext
from webtext.shards import summary
from webtext.shards.card import write_card

SCHEMA_KEY = b"webtext_schema_version"
SHARD_SCHEMA = SHARD.with_metadata({SCHEMA_KEY: SCHEMA_VERSION.encode()})
CARD = "README.md"
FILL = 0.9  # target bucket size as a fraction of max_rows_per_shard: a bucket rarely needs two files
CHUNK_BYTES = 64 * 2**20  # scatter: decoded bytes held before a chunk is written to scratch
READ_BATCH_ROWS = 4096
LIBRARIES = ["webtext", "ray", "scrapy", "trafilatura", "datasketch", "resiliparse", "pyarrow", "torch", "tiktoken"]


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.parquet"


def sha256_file(location) -> str:
    digest = hashlib.sha256()
    with storage.open_input_stream(location) as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def bucket_count(rows: int, max_rows: int) -> int:
    return 1 if rows <= max_rows else math.ceil(rows / (FILL * max_rows))


def buckets_of(ids: pa.Array, count: int) -> np.ndarray:
    """Bucket of each id: xxh64 of its UTF-8 bytes mod `count` (stable across processes and machines)."""
    return np.fromiter(
        (xxhash.xxh64_intdigest(i.encode()) % count for i in ids.to_pylist()), dtype=np.int64, count=len(ids)
    )


# -- scatter ----------------------------------------------------------------------------------------


def _check_required(table: pa.Table, location: str, first_row: int) -> None:
    for name in ("id", "text"):
        nulls = table.column(name).null_count
        if nulls:
            row = first_row + pc.index(pc.is_null(table.column(name)), True).as_py()
            raise InputError(
                f"{location}: row {row}: `{name}` is null ({nulls} such rows in this chunk); documents need an id and a text"
            )


def _write_chunk(table: pa.Table, count: int, path: str) -> list[int]:
    """One scratch file, rows grouped by bucket, one row group per non-empty bucket; rows per bucket."""
    buckets = buckets_of(table.column("id").combine_chunks(), count)
    order = np.argsort(buckets, kind="stable")
    table = table.take(pa.array(order))
    rows = np.bincount(buckets, minlength=count)
    with storage.parquet_writer(path, table.schema, compression="lz4") as writer:
        start = 0
        for n in rows:
            if n:
                writer.write_table(table.slice(start, int(n)), row_group_size=int(n))
                start += int(n)
    return [int(n) for n in rows]


@dataclass(frozen=True)
class ScatterTask:
    index: int
    location: str  # an input file
    buckets: int
    folder: str


def scatter(task: ScatterTask) -> list[tuple[str, list[int]]]:
    """Task: one input file into bucket-grouped scratch files; returns (file, rows per bucket) for each."""
    index, location, count, scratch = task.index, task.location, task.buckets, task.folder
    with storage.open_input(location) as f:
        parquet = pq.ParquetFile(f)
        columns = [name for name in SHARD.names if name in parquet.schema_arrow.names]
        results, chunk, held, first_row = [], [], 0, 0

        def flush():
            nonlocal chunk, held, first_row
            table = conform(pa.Table.from_batches(chunk), SHARD)
            _check_required(table, location, first_row)
            path = storage.join(scratch, f"scatter-{index:05d}-{len(results):04d}.parquet")
            results.append((path, _write_chunk(table, count, path)))
            first_row += table.num_rows
            chunk, held = [], 0

        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
            chunk.append(batch)
            held += batch.nbytes
            if held >= CHUNK_BYTES:
                flush()
        if chunk:
            flush()
    return results


# -- gather -----------------------------------------------------------------------------------------


PLAN = "plan.npz"


def write_plan(location: str, paths: list[str], counts: np.ndarray) -> None:
    """Scratch files and their rows per bucket (chunks x buckets): a few bytes per pair, read by each gather."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, paths=np.array(paths, dtype=str), counts=counts)
    storage.write_bytes(location, buffer.getvalue())


def bucket_sources(plan: str, bucket: int) -> list[tuple[str, int]]:
    """(scratch file, row group) of every piece of `bucket`: its row group is its rank among the file's non-empty buckets."""
    with np.load(io.BytesIO(storage.read_bytes(plan))) as data:
        paths, counts = data["paths"], data["counts"]
    groups = (counts[:, :bucket] > 0).sum(axis=1)
    return [(str(paths[c]), int(groups[c])) for c in np.flatnonzero(counts[:, bucket] > 0)]


def _read_bucket(sources: list[tuple[str, int]]) -> pa.Table:
    parts = []
    for path, group in sources:
        with storage.open_input(path) as f:
            parts.append(pq.ParquetFile(f).read_row_group(group))
    return pa.concat_tables(parts) if parts else SHARD.empty_table()


def _sorted_unique(table: pa.Table) -> tuple[pa.Table, int]:
    """Rows sorted by id (ties by url, then text, so the kept row is deterministic); duplicate ids dropped."""
    table = table.sort_by([("id", "ascending"), ("url", "ascending"), ("text", "ascending")])
    if table.num_rows < 2:
        return table, 0
    ids = table.column("id")
    repeated = pc.equal(ids.slice(1), ids.slice(0, table.num_rows - 1))
    duplicates = int(pc.sum(repeated).as_py() or 0)
    if duplicates:
        keep = pa.concat_arrays([pa.array([True]), pc.invert(repeated).combine_chunks()])
        table = table.filter(keep)
    return table, duplicates


@dataclass(frozen=True)
class GatherTask:
    bucket: int
    plan: str
    first: int  # index of its first shard file
    files: int  # its shard files
    total: int  # shard files of the dataset
    out: str
    compression: str
    row_group_rows: int


def gather(item: GatherTask) -> dict:
    """Task: one bucket into its shard file(s); returns their manifest entries, summary and drops."""
    table, duplicates = _sorted_unique(_read_bucket(bucket_sources(item.plan, item.bucket)))
    table = table.replace_schema_metadata(SHARD_SCHEMA.metadata)
    files = item.files
    entries, summaries = [], []
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for j in range(files):
        part = table.slice(int(bounds[j]), int(bounds[j + 1] - bounds[j]))
        relative = f"{DATA}/{shard_name(item.first + j, item.total)}"
        location = storage.join(item.out, *relative.split("/"))
        with storage.parquet_writer(location, SHARD_SCHEMA, compression=item.compression) as writer:
            writer.write_table(part, row_group_size=item.row_group_rows)
        entries.append(
            {
                "file": relative,
                "bucket": item.bucket,
                "rows": part.num_rows,
                "bytes": storage.size(location),
                "sha256": sha256_file(location),
            }
        )
        summaries.append(summary.summarize(part.select([c for c in summary.COLUMNS if c in part.column_names])))
    return {"entries": entries, "summary": summary.merge(summaries), "duplicates": duplicates}


# -- the steps, on the driver ----------------------------------------------------------------------


def _scatter_tasks(ctx: StepContext) -> list[ScatterTask]:
    config: ShardConfig = ctx.config or ShardConfig()
    count = bucket_count(ctx.stats.input, config.max_rows_per_shard)
    return [ScatterTask(i, f, count, ctx.folder("scatter")) for i, f in enumerate(ctx.files)]


def _scattered(ctx: StepContext, scattered: list) -> dict:
    """The plan of the gather (written to storage) and the rows of each bucket (the step's summary)."""
    count = bucket_count(ctx.stats.input, (ctx.config or ShardConfig()).max_rows_per_shard)
    # the driver holds chunks x buckets counts (a few MB for tens of millions of documents), never rows
    paths = [path for results in scattered for path, _ in results]
    counts = np.array([per_bucket for results in scattered for _, per_bucket in results], dtype=np.int64).reshape(
        len(paths), count
    )
    rows = counts.sum(axis=0).tolist()
    write_plan(storage.join(ctx.folder("scatter"), PLAN), paths, counts)
    if sum(rows) != ctx.stats.input:
        raise AccountingError(f"shards: {ctx.stats.input} documents in the inputs' footers, {sum(rows)} read")
    return {"rows": rows}


def _gather_tasks(ctx: StepContext) -> list[GatherTask]:
    config: ShardConfig = ctx.config or ShardConfig()
    per_bucket_files = [max(1, math.ceil(n / config.max_rows_per_shard)) for n in ctx.summary("scatter")["rows"]]
    total_files = sum(per_bucket_files)
    plan = storage.join(ctx.folder("scatter"), PLAN)
    items, first = [], 0
    for bucket, files in enumerate(per_bucket_files):
        items.append(
            GatherTask(bucket, plan, first, files, total_files, ctx.out, config.compression, config.row_group_rows)
        )
        first += files
    return items


def _gathered(ctx: StepContext, results: list[dict]) -> None:
    """The counts, then the dataset card and the manifest (the last file)."""
    entries = [entry for result in results for entry in result["entries"]]
    duplicates = sum(result["duplicates"] for result in results)
    stats = ctx.stats
    stats.output = sum(entry["rows"] for entry in entries)
    if duplicates:
        stats.dropped["duplicate_id"] += duplicates
    totals = summary.merge([result["summary"] for result in results])
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "documents": stats.output,
        "words": totals.get("words", 0),
        "tokens": totals.get("tokens"),
        "bytes": sum(entry["bytes"] for entry in entries),
        "buckets": len(
            results
        ),  # a document's bucket: xxh64(UTF-8 id) mod buckets; each file holds one bucket's id range
        "shards": entries,
        "summary": totals,
        "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in SHARD],
        "funnel": ctx.funnel + [stats.to_dict()],
        "config": _build_config(ctx),
        "libraries": library_versions(),
    }
    overlap = _overlap(ctx.inputs)
    if overlap is not None:
        manifest["overlap"] = overlap
    write_card(ctx.out, manifest, overlap)
    storage.write_json(storage.join(ctx.out, MANIFEST), manifest)


STEPS = (
    Step("scatter", scatter, _scatter_tasks, _scattered, Resources(num_cpus=1)),
    Step("gather", gather, _gather_tasks, _gathered, Resources(num_cpus=1)),
)


def _build_config(ctx: StepContext) -> dict | None:
    config = ctx.context.get("build_config")
    if config is None:
        return {"shards": (ctx.config or ShardConfig()).model_dump(mode="json")}
    return config.model_dump(mode="json")


def _overlap(inputs: list[str]) -> dict | None:
    """The overlap report beside the input documents (decontaminate's, else `webtext overlap`'s), if any."""
    for location in inputs:
        if not storage.is_dir(location):
            continue
        for name in (OVERLAP_REPORT, OVERLAP_TABLE):
            candidate = storage.join(location, name)
            if storage.exists(candidate):
                return storage.read_json(candidate)
    return None
