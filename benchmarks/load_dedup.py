"""Load: `webtext dedup` of N generated documents (default 1M: unrelated documents, exact and near
copies from benchmarks/dedup_generate.py), with the wall time and the peak RSS of every process of
the run (driver, raylet, GCS, agents, every Ray worker), sampled every 0.5 s.

Baseline, measured in the same run (alternated when --rounds > 1): one process that reads the same
documents and hashes every text (blake2b) — the floor of any exact deduplication of this corpus.

    .venv/bin/python benchmarks/load_dedup.py --docs 1000000 --work /tmp/load-dedup
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from load_harvest import HERE, stage_round

BASELINE = """
import hashlib, sys, time
import pyarrow.parquet as pq
start = time.perf_counter()
seen, n = set(), 0
for path in sorted(__import__("pathlib").Path(sys.argv[1]).glob("*.parquet")):
    for batch in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=10_000):
        for text in batch.column(0).to_pylist():
            seen.add(hashlib.blake2b(text.encode(), digest_size=16).digest())
            n += 1
print(n, len(seen), time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/load-dedup"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    corpus = args.work / f"corpus-{args.docs}"
    if not (corpus / "docs").exists():
        start = time.perf_counter()
        shutil.rmtree(corpus, ignore_errors=True)
        subprocess.run(
            [sys.executable, str(HERE / "dedup_generate.py"), str(corpus), "--docs", str(args.docs)], check=True
        )
        print(f"generated {corpus} in {time.perf_counter() - start:.0f} s", flush=True)
    config = args.work / "build.yaml"
    config.write_text(f"ray: {{num_cpus: {args.num_cpus}, object_store_memory_mb: 512}}\n")
    results = []
    for round_ in range(args.rounds):
        stats, figures = stage_round(
            [sys.executable, "-c", BASELINE, str(corpus / "docs")],
            "dedup",
            [str(corpus / "docs")],
            args.work / "deduped",
            config,
            args.work,
        )
        wall = figures.pop("wall")
        results.append(
            {
                "round": round_,
                "documents": stats["input"],
                "kept": stats["output"],
                "dropped": stats["dropped"],
                "dedup_s": round(wall, 1),
                "docs_per_s": round(stats["input"] / wall),
                **figures,
            }
        )
        print(json.dumps(results[-1], indent=1), flush=True)
    print(json.dumps({"summary": [{k: v for k, v in r.items() if k != "processes"} for r in results]}))


if __name__ == "__main__":
    main()
