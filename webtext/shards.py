"""Final Parquet shards, their manifest, and reading them back.

A shards folder holds `manifest.json` and `data/shard-00000-of-00003.parquet`...: the Parquet files
sit alone in `data/` so that any reader can open that folder whole. Names are deterministic (rows
sorted by id), so a rebuild of the same inputs gives the same files; the manifest records each
shard's rows, bytes and sha256, the build config, library versions and the funnel.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from webtext.config import BuildConfig
from webtext.schemas import SCHEMA_VERSION, SHARD, conform
from webtext.stats import StageStats

MANIFEST = "manifest.json"
DATA = "data"
LIBRARIES = ["webtext", "ray", "scrapy", "trafilatura", "datasketch", "rbloom", "pyarrow", "torch", "tiktoken"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
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


def write_shards(docs: Path, out_dir: Path, config: BuildConfig, funnel: list[StageStats]) -> StageStats:
    """Documents in (any Parquet file or folder), shards + manifest.json out."""
    start = time.perf_counter()
    table = pads.dataset(docs, format="parquet").to_table()
    table = conform(table, SHARD).sort_by("id")
    out_dir = Path(out_dir)
    (out_dir / DATA).mkdir(parents=True, exist_ok=True)
    for old in (out_dir / DATA).glob("shard-*.parquet"):
        old.unlink()
    limit = config.shards.max_rows_per_shard
    count = max(1, math.ceil(table.num_rows / limit))
    schema = SHARD.with_metadata({"webtext_schema_version": SCHEMA_VERSION})
    shards = []
    for i in range(count):
        path = out_dir / DATA / f"shard-{i:05d}-of-{count:05d}.parquet"
        part = table.slice(i * limit, limit).replace_schema_metadata(schema.metadata)
        pq.write_table(part, path, row_group_size=config.shards.row_group_rows, compression=config.shards.compression)
        shards.append({"file": f"{DATA}/{path.name}", "rows": part.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    stats = StageStats("shards", "documents", input=table.num_rows, output=table.num_rows)
    stats.seconds = time.perf_counter() - start
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "documents": table.num_rows,
        "words": int(pa.compute.sum(table.column("n_words")).as_py() or 0),
        "shards": shards,
        "funnel": [s.to_dict() for s in funnel + [stats]],
        "config": json.loads(config.model_dump_json()),
        "libraries": library_versions(),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return stats


def read_manifest(shards_dir: Path) -> dict:
    path = Path(shards_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read manifest: {exc}") from exc


def shard_files(shards_dir: Path) -> list[Path]:
    """The shard files of a shards folder, in order; a clear error when there are none."""
    files = sorted((Path(shards_dir) / DATA).glob("shard-*.parquet"))
    if not files:
        raise ValueError(f"{shards_dir}: no {DATA}/shard-*.parquet files")
    return files
