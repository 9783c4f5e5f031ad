"""`webtext validate`: every check a shards folder's receiver can run, one line per problem.

- the manifest: present, readable, this schema version; its file list equals `data/`'s;
- each file: size and sha256 as the manifest says, Parquet footer row count, schema and schema version;
- each row: non-null `id`, `url`, `text`; the id in the file's hash bucket (`xxh64(id) mod buckets`);
  ids strictly increasing within a file and across the files of one bucket.

The last two make "no duplicate id anywhere" a per-file check in constant memory: two equal ids have
the same bucket, a bucket's files are consecutive id ranges, and ids only increase within one.
Files are checked in parallel threads (hashing and Parquet decoding release the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.core import storage
from webtext.core.manifest import DATA, MANIFEST, ManifestError, read_manifest
from webtext.core.schemas import SCHEMA_VERSION, SHARD
from webtext.shards.write import SCHEMA_KEY, buckets_of, sha256_file

REQUIRED = [f.name for f in SHARD if not f.nullable]
THREADS = 4


def _schema_problems(location: str, schema: pa.Schema) -> list[str]:
    problems = []
    for f in SHARD:
        if f.name not in schema.names:
            problems.append(f"{location}: missing column {f.name!r}")
        elif not schema.field(f.name).type.equals(f.type):
            problems.append(f"{location}: column {f.name!r} is {schema.field(f.name).type}, the schema says {f.type}")
    extra = [name for name in schema.names if name not in SHARD.names]
    if extra:
        problems.append(f"{location}: columns not in schema version {SCHEMA_VERSION}: {', '.join(extra)}")
    version = (schema.metadata or {}).get(SCHEMA_KEY, b"").decode() or None
    if version != SCHEMA_VERSION:
        problems.append(f"{location}: Parquet schema version {version!r}, expected {SCHEMA_VERSION!r}")
    return problems


def check_file(location: str, entry: dict, buckets: int | None) -> tuple[list[str], str | None, str | None]:
    """Problems of one shard file, and its first and last id (for the checks across a bucket's files)."""
    problems: list[str] = []
    size = storage.size(location)
    if size != entry.get("bytes"):
        problems.append(f"{location}: {size} bytes, the manifest says {entry.get('bytes')}")
    digest = sha256_file(location)
    if digest != entry.get("sha256"):
        problems.append(f"{location}: sha256 {digest[:16]}..., the manifest says {str(entry.get('sha256'))[:16]}...")
    try:
        with storage.open_input(location) as f:
            parquet = pq.ParquetFile(f)
            if parquet.metadata.num_rows != entry.get("rows"):
                problems.append(f"{location}: {parquet.metadata.num_rows} rows, the manifest says {entry.get('rows')}")
            problems += _schema_problems(location, parquet.schema_arrow)
            if any(name not in parquet.schema_arrow.names for name in REQUIRED):
                return problems, None, None
            first = last = None
            row = 0
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=REQUIRED)
                for name in REQUIRED:
                    nulls = table.column(name).null_count
                    if nulls:
                        problems.append(
                            f"{location}: row group {group}: {nulls} null value(s) in required column {name!r}"
                        )
                ids = table.column("id").combine_chunks().drop_null()
                if len(ids):
                    problems += _id_problems(location, ids, row, last, buckets, entry.get("bucket"))
                    first = first if first is not None else ids[0].as_py()
                    last = ids[-1].as_py()
                row += table.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        problems.append(f"{location}: not a readable Parquet file: {exc}")
        return problems, None, None
    return problems, first, last


def _id_problems(
    location: str, ids: pa.Array, row: int, previous: str | None, buckets: int | None, bucket: int | None
) -> list[str]:
    problems = []
    offset = 0 if previous is None else 1
    chain = ids if previous is None else pa.concat_arrays([pa.array([previous], ids.type), ids])
    if len(chain) > 1:
        bad = pc.invert(pc.less(chain.slice(0, len(chain) - 1), chain.slice(1)))
        count = int(pc.sum(bad).as_py() or 0)
        if count:
            k = pc.index(bad, True).as_py()
            before, value = chain[k].as_py(), chain[k + 1].as_py()
            what = "duplicate id" if value == before else "id out of order"
            problems.append(
                f"{location}: row {row + k + 1 - offset}: {what} {value!r} ({count} such row(s) in row group)"
            )
    if buckets is not None and bucket is not None:
        wrong = np.flatnonzero(buckets_of(ids, buckets) != bucket)
        if len(wrong):
            problems.append(
                f"{location}: row {row + int(wrong[0])}: id {ids[int(wrong[0])].as_py()!r} is not in this file's bucket {bucket} "
                f"({len(wrong)} such row(s)); duplicates across files cannot be ruled out"
            )
    return problems


def validate(shards_dir: str) -> list[str]:
    """Every problem of a shards folder, one line each naming the file; empty when it is sound."""
    shards_dir = storage.normalize(shards_dir)
    try:
        manifest = read_manifest(shards_dir)
    except (ManifestError, OSError) as exc:
        return [str(exc)]
    manifest_path = storage.join(shards_dir, MANIFEST)
    problems = []
    if manifest.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            f"{manifest_path}: schema version {manifest.get('schema_version')!r}, this webtext reads {SCHEMA_VERSION!r}"
        )
    entries = manifest.get("shards")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e for e in entries):
        return problems + [f"{manifest_path}: no valid `shards` list"]
    data_dir = storage.join(shards_dir, DATA)
    present = (
        {f"{DATA}/{storage.name(f)}" for f in storage.list_files(data_dir, recursive=False)}
        if storage.exists(data_dir)
        else set()
    )
    listed = [e["file"] for e in entries]
    for name in sorted(present - set(listed)):
        problems.append(f"{storage.join(shards_dir, *name.split('/'))}: not listed in the manifest")
    buckets = manifest.get("buckets")
    if buckets is None:
        problems.append(f"{manifest_path}: no `buckets`: duplicate ids across files cannot be checked")
    if sum(e.get("rows", 0) for e in entries) != manifest.get("documents"):
        problems.append(
            f"{manifest_path}: shard rows add up to {sum(e.get('rows', 0) for e in entries)}, `documents` says {manifest.get('documents')}"
        )
    todo = []
    for entry in entries:
        location = storage.join(shards_dir, *entry["file"].split("/"))
        if entry["file"] not in present:
            problems.append(f"{location}: listed in the manifest but missing")
        else:
            todo.append((location, entry))
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda item: check_file(item[0], item[1], buckets), todo))
    ranges: dict[int, list[tuple[str, str, str]]] = {}
    for (location, entry), (file_problems, first, last) in zip(todo, results):
        problems += file_problems
        if first is not None and entry.get("bucket") is not None:
            ranges.setdefault(entry["bucket"], []).append((location, first, last))
    for files in ranges.values():
        for (_, _, last), (location, first, _) in zip(files, files[1:]):
            if first <= last:
                problems.append(
                    f"{location}: first id {first!r} is not after the previous file's last id {last!r} of the same bucket"
                )
    return problems
