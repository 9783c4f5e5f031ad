"""Wall time of `webtext extract` (Ray, 2 workers, start included) vs a 1-core bare trafilatura loop.

    .venv/bin/python benchmarks/extraction_stage.py [--data DIR] [--limit N] [--workers 2] [--repeat 1]

The WCXB dev pages are first written as one Parquet file (url + html bytes); then, alternately,
the CLI runs as a subprocess (`webtext extract PAGES.parquet --out OUT`, a fresh output folder each
time, Ray started and stopped inside it) and one process calls `trafilatura.extract` on each page of
the same Parquet. Both read the same file, so the comparison is the whole stage (read, Ray start,
extraction + cleaning + filters + token counts, write) against the bare library loop.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import trafilatura

DATA = Path("/work/shared/data/extraction/wcxb-dev")
WEBTEXT = Path(sys.executable).with_name("webtext")


def write_pages(data: Path, limit: int | None, path: Path) -> int:
    urls, bodies = [], []
    for truth in sorted((data / "ground-truth").glob("*.json"))[:limit]:
        urls.append(json.loads(truth.read_text()).get("url") or f"http://wcxb.invalid/{truth.stem}")
        bodies.append(gzip.decompress((data / "html" / f"{truth.stem}.html.gz").read_bytes()))
    pq.write_table(pa.table({"url": pa.array(urls, pa.string()), "html": pa.array(bodies, pa.binary())}), path)
    return len(urls)


def bare_loop(pages: Path) -> float:
    start = time.perf_counter()
    for html in pq.read_table(pages, columns=["html"]).column("html").to_pylist():
        trafilatura.extract(html)
    return time.perf_counter() - start


def stage(pages: Path, out: Path, config: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(WEBTEXT), "extract", str(pages), "--out", str(out), "--config", str(config)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N pages only")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs for the stage")
    parser.add_argument("--repeat", type=int, default=1, help="alternated runs of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = write_pages(args.data, args.limit, tmp / "pages.parquet")
        (tmp / "config.yaml").write_text(f"ray:\n  num_cpus: {args.workers}\n")
        times = {"stage": [], "bare": []}
        for i in range(args.repeat):
            for system in ("stage", "bare") if i % 2 else ("bare", "stage"):
                if system == "bare":
                    times["bare"].append(bare_loop(tmp / "pages.parquet"))
                else:
                    times["stage"].append(stage(tmp / "pages.parquet", tmp / f"out{i}", tmp / "config.yaml"))
                print(f"run {i} {system}: {times[system][-1]:.1f} s", flush=True)
        stats = json.loads((tmp / "out0" / "_stats.json").read_text())
    s, b = statistics.median(times["stage"]), statistics.median(times["bare"])
    print(
        f"\n{n} pages: `webtext extract` ({args.workers} Ray CPUs, start included) {s:.1f} s wall, "
        f"bare trafilatura loop (1 core) {b:.1f} s, ratio {s / b:.2f}x (< 1 = the stage is faster)"
    )
    print(f"stage stats: {json.dumps(stats)[:600]}")


if __name__ == "__main__":
    main()
