"""`webtext inspect`: what a shards folder holds, at a glance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from webtext.shards import read_manifest, shard_files
from webtext.stats import StageStats, format_funnel


def inspect_shards(shards_dir: Path, samples: int = 2, top: int = 10) -> None:
    files = shard_files(shards_dir)
    manifest = read_manifest(shards_dir)
    table = pq.ParquetDataset(files).read(columns=["id", "url", "domain", "subreddits", "n_words", "title", "text"])
    words = table.column("n_words").to_pylist()
    print(f"{shards_dir}: {table.num_rows} documents, {sum(words)} words, {len(files)} shard(s), "
          f"{sum(f.stat().st_size for f in files)} bytes, schema version {manifest.get('schema_version')}")
    print("\nschema:")
    print(pq.read_schema(files[0]).to_string(show_schema_metadata=False))
    print("\nfunnel:")
    print(format_funnel([StageStats.from_dict(s) for s in manifest.get("funnel", [])]))
    if words:
        ordered = sorted(words)
        quartiles = [ordered[int(q * (len(ordered) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)]
        print(f"\nwords per document (min, q1, median, q3, max): {quartiles}")
    for label, values in (("domains", table.column("domain").to_pylist()),
                          ("subreddits", [s for subs in table.column("subreddits").to_pylist() for s in subs or []])):
        print(f"\ntop {label}:")
        for name, n in Counter(values).most_common(top):
            print(f"  {n:>6}  {name}")
    for row in table.slice(0, samples).to_pylist():
        print(f"\n--- {row['id']}  {row['url']}\n{row['title'] or ''}\n{row['text'][:500]}")
