"""The shards stage: final Parquet shards, their manifest and dataset card; validating and inspecting them.

A shards folder holds `data/shard-00000-of-00003.parquet`... (alone in `data/`, so any reader can
open that folder whole), `README.md` (a Hugging Face dataset card) and `manifest.json` (written last:
rows, bytes and sha256 of every shard, the funnel, the build config, library versions).
"""

from __future__ import annotations

import pyarrow as pa

from webtext.core.manifest import check_manifest, read_manifest, shard_files
from webtext.core.schemas import SHARD
from webtext.core.stage import Resources, Stage, null_default
from webtext.shards.write import SHARD_SCHEMA, STEPS, sha256_file

SHARDS = Stage(
    name="shards",
    unit="documents",
    required={"id": pa.string(), "text": pa.string()},
    # every other shard column is optional (null when absent); declared so that input types are checked up front
    optional={f.name: (f.type, null_default(f.type)) for f in SHARD if f.name not in ("id", "text")},
    output=SHARD,
    steps=STEPS,
    non_null=("id", "text"),
    resources=Resources(num_cpus=1),
    description="documents -> id-bucketed Parquet shards, README.md dataset card, manifest.json",
)

__all__ = ["SHARDS", "SHARD_SCHEMA", "check_manifest", "read_manifest", "shard_files", "sha256_file"]
