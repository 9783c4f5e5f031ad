"""Wall time of each demo stage, with single-process baselines for the CPU-bound stages.

    .venv/bin/python benchmarks/demo_stages.py [--articles 200]

Runs `webtext demo` into a temporary folder, then times on the very pages and documents it made:
- plain `trafilatura.extract` in one loop vs the extract stage (trafilatura + cleaning on Ray), and
  the stage's own `Extractor` called in this process (its work without Ray);
- a plain datasketch loop (default MinHash, MinHashLSH insert + query) vs the dedup stage, and the
  stage's vectorized signatures (`dedup.minhash.signatures`) called in this process.
At demo scale Ray's per-stage start-up dominates; the ratios say how much.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import trafilatura
from datasketch import MinHash, MinHashLSH

from cleaning.extract import Extractor
from dedup.minhash import normalized_text, shingles, signatures
from webtext.core.config import DedupConfig, ExtractConfig
from webtext.demo.run import run_demo


def plain_trafilatura(pages_dir: Path) -> tuple[float, int]:
    pages = pq.read_table(pages_dir, columns=["html"]).column("html").to_pylist()
    start = time.perf_counter()
    extracted = sum(1 for html in pages if html and trafilatura.extract(html.decode("utf-8", "replace")))
    return time.perf_counter() - start, extracted


def in_process_extractor(pages_dir: Path) -> float:
    pages = pq.read_table(pages_dir)
    start = time.perf_counter()
    Extractor(ExtractConfig())(pages)
    return time.perf_counter() - start


def in_process_signatures(docs_dir: Path) -> float:
    texts = pq.read_table(docs_dir, columns=["text"]).column("text")
    start = time.perf_counter()
    signatures(texts, DedupConfig())
    return time.perf_counter() - start


def plain_datasketch(docs_dir: Path) -> tuple[float, int]:
    """The textbook loop, on the stage's own shingles: one `MinHash.update` per shingle."""
    texts = pq.read_table(docs_dir, columns=["text"]).column("text").to_pylist()
    config = DedupConfig()
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    duplicates = 0
    for i, text in enumerate(texts):
        sketch = MinHash(num_perm=config.num_perm)
        for shingle in shingles(normalized_text(text), config.shingle_words):
            sketch.update(shingle)
        if lsh.query(sketch):
            duplicates += 1
        else:
            lsh.insert(str(i), sketch)
    return time.perf_counter() - start, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        run_demo(out_dir=out, articles=args.articles)
        timings = json.loads((out / "timings.json").read_text())
        seconds = timings["seconds"]
        extract_base, extracted = plain_trafilatura(out / "crawl")
        extract_own = in_process_extractor(out / "crawl")
        dedup_base, duplicates = plain_datasketch(out / "extract")
        dedup_own = in_process_signatures(out / "extract")
    print("\nstage            wall s")
    for name, value in seconds.items():
        print(f"{name:<16}{value:>7.1f}")
    print(f"train throughput {timings['train_tokens_per_s']:,} tokens/s")
    print(
        f"\nextract stage {seconds['extract']:.1f}s vs plain trafilatura loop {extract_base:.1f}s "
        f"({extracted} pages with text): ratio {seconds['extract'] / extract_base:.2f}"
    )
    print(f"  Extractor in one process {extract_own:.1f}s: ratio to plain {extract_own / extract_base:.2f}")
    print(
        f"dedup stage {seconds['dedup']:.1f}s vs plain datasketch loop {dedup_base:.1f}s "
        f"({duplicates} near/exact duplicates): ratio {seconds['dedup'] / dedup_base:.2f}"
    )
    print(
        f"  vectorized signatures alone, in one process {dedup_own:.2f}s: ratio to plain {dedup_own / dedup_base:.2f}"
    )


if __name__ == "__main__":
    main()
