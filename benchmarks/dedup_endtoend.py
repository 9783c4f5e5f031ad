"""The dedup stage end to end on a generated corpus (benchmarks/dedup_generate.py): wall time (and
each step's, from the stage's completion marker), peak RSS of the driver and of every Ray process,
precision/recall per Jaccard band against the exact ground truth; optionally datatrove's MinHash
dedup side by side on the same documents.

    .venv/bin/python benchmarks/dedup_generate.py /tmp/dd100k --docs 100000
    .venv/bin/python benchmarks/dedup_endtoend.py /tmp/dd100k [--datatrove]

A planted pair is found when one of its two documents is removed. Precision: the share of removed
documents that belong to a pair of true Jaccard >= 0.8 (the threshold). Memory: VmHWM (peak RSS)
of each process descending from this one (the local Ray's raylet, workers, ...), sampled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from memory import PeakRSS

BANDS = [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]


def evaluate(truth_path: Path, all_ids: set[str], kept: set[str]) -> tuple[str, dict]:
    truth = pq.read_table(truth_path).to_pylist()
    removed = all_ids - kept
    true_dups = {d for t in truth if t["jaccard"] >= 0.8 for d in (t["copy"], t["source"])}
    lines = ["Jaccard band       pairs  found  recall"]
    found_pairs = set()
    for lo, hi in zip(BANDS, BANDS[1:]):
        pairs = [t for t in truth if t["kind"] == "near" and lo <= t["jaccard"] < hi]
        found = [t for t in pairs if t["copy"] in removed or t["source"] in removed]
        found_pairs |= {t["copy"] for t in found}
        lines.append(
            f"near [{lo:.2f}, {hi:.2f})  {len(pairs):6d} {len(found):6d}  {len(found) / max(1, len(pairs)):.3f}"
        )
    exact = [t for t in truth if t["kind"] == "exact"]
    found = [t for t in exact if t["copy"] in removed or t["source"] in removed]
    found_pairs |= {t["copy"] for t in found}
    lines.append(f"exact copies      {len(exact):6d} {len(found):6d}  {len(found) / max(1, len(exact)):.3f}")
    high = [t for t in truth if t["jaccard"] >= 0.8]
    recall = sum(t["copy"] in removed or t["source"] in removed for t in high) / max(1, len(high))
    precision = len(removed & true_dups) / max(1, len(removed))
    lines.append(
        f"recall at J >= 0.8: {recall:.4f}   precision (removed docs in a J >= 0.8 pair): {precision:.4f}   removed {len(removed)}"
    )
    return "\n".join(lines), {"recall": recall, "precision": precision, "found_pairs": found_pairs, "removed": removed}


def run_webtext(data: Path, out: Path) -> tuple[float, set[str], str]:
    from dedup.dedup import DEDUP
    from webtext.core import runner
    from webtext.core.config import DedupConfig

    runner.init_ray(address="local")
    with PeakRSS() as memory:
        began = time.time()
        start = time.perf_counter()
        stats = runner.run_stage(DEDUP, [str(data / "docs")], str(out), DedupConfig(), force=True)
        seconds = time.perf_counter() - start
    kept = set(pq.read_table(out, columns=["id"]).column("id").to_pylist())
    return seconds, kept, f"{stats.to_dict()}\nsteps: {step_times(out / runner.MARKER, began)}\n{memory.report()}"


def step_times(marker: Path, began: float) -> str:
    """Each step's time, from when the stage's marker says each finished (the first one's includes
    the runner's input checks)."""
    times, last = [], began
    for name, finished in json.loads(marker.read_text())["steps"].items():
        times.append(f"{name} {finished - last:.1f}s")
        last = finished
    return ", ".join(times)


def run_datatrove(data: Path, work: Path, bands: int, rows: int) -> tuple[float, set[str], str]:
    """datatrove's 4-step MinHash pipeline (signatures, buckets, clusters, filter), 2 local workers."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.text import TextNormConfig
    from dedup_datatrove_tokenizer import SplitTokenizer, xxhash64

    shutil.rmtree(work, ignore_errors=True)
    config = MinhashConfig(
        n_grams=5, num_buckets=bands, hashes_per_bucket=rows, norm_config=TextNormConfig(norm_numbers=False)
    )
    reader = ParquetReader(str(data / "docs"), text_key="text", id_key="id")
    signer = MinhashDedupSignature(str(work / "sigs"), config=config, language=SplitTokenizer())
    signer._hash_func = xxhash64
    tasks = len(list((data / "docs").glob("*.parquet")))
    steps = [
        LocalPipelineExecutor([reader, signer], tasks=tasks, workers=2, logging_dir=str(work / "logs1")),
        LocalPipelineExecutor(
            [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
            tasks=bands,
            workers=2,
            logging_dir=str(work / "logs2"),
        ),
        LocalPipelineExecutor(
            [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)],
            tasks=1,
            logging_dir=str(work / "logs3"),
        ),
        LocalPipelineExecutor(
            [reader, MinhashDedupFilter(str(work / "remove")), JsonlWriter(str(work / "kept"), compression=None)],
            tasks=tasks,
            workers=2,
            logging_dir=str(work / "logs4"),
        ),
    ]
    with PeakRSS() as memory:
        start = time.perf_counter()
        for step in steps:
            step.run()
        seconds = time.perf_counter() - start
    kept = set(
        pc.unique(ds.dataset(str(work / "kept"), format="json").to_table(columns=["id"]).column("id")).to_pylist()
    )
    return seconds, kept, memory.report()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--datatrove", action="store_true")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or args.data / "work"
    from dedup.minhash import lsh_params

    bands, rows = lsh_params(0.8, 128)
    seconds, kept, info = run_webtext(args.data, work / "webtext")  # first: peak RSS is a lifetime figure
    all_ids = set(pq.read_table(args.data / "docs", columns=["id"]).column("id").to_pylist())
    print(f"{len(all_ids)} documents in {args.data}")
    print(
        f"\n== webtext dedup: {seconds:.1f} s ({len(all_ids) / seconds:.0f} docs/s), bands x rows = {bands} x {rows}\n{info}"
    )
    table, ours = evaluate(args.data / "truth.parquet", all_ids, kept)
    print(table)
    if args.datatrove:
        seconds_dt, kept_dt, info_dt = run_datatrove(args.data, work / "datatrove", bands, rows)
        print(f"\n== datatrove MinHash (same bands/rows, 5-grams): {seconds_dt:.1f} s\n{info_dt}")
        table_dt, theirs = evaluate(args.data / "truth.parquet", all_ids, kept_dt)
        print(table_dt)
        union = ours["found_pairs"] | theirs["found_pairs"]
        agree = len(ours["found_pairs"] & theirs["found_pairs"]) / max(1, len(union))
        removed_union = ours["removed"] | theirs["removed"]
        same_removed = len(ours["removed"] & theirs["removed"]) / max(1, len(removed_union))
        print(
            f"\nwall time: datatrove / webtext = {seconds_dt / seconds:.2f}x; planted pairs found by both / by either: "
            f"{agree:.3f}; removed documents identical in both / in either: {same_removed:.3f} "
            "(the survivor rules differ: webtext keeps the most karma)"
        )


if __name__ == "__main__":
    main()
