"""Shard writing and streaming reads, on generated documents.

1. Writing: the shards stage (id-bucketed scatter/gather Ray tasks) against the previous writer
   (whole corpus read into one table, sorted in memory, sliced into files), for each corpus size,
   runs alternated. Each run is a fresh process; its peak RSS is the kernel's VmHWM of every process
   of its tree (the driver and, for the stage, Ray's workers), sampled every 0.2 s.
2. Streaming reads of `text`, row group by row group (what the training loader does), for shard and
   row-group sizes: documents/s and MB/s (file bytes), the chosen sizes against the old defaults.

    .venv/bin/python benchmarks/shards_bench.py --docs 100000 1000000 --work /tmp/shards-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FILE_DOCS = 50_000


def generate(n: int, folder: Path, seed: int = 0) -> None:
    """n documents in files of FILE_DOCS: Zipf words from a 20k vocabulary, log-normal lengths (median ~300 words)."""
    if folder.exists() and sum(pq.read_metadata(f).num_rows for f in folder.glob("*.parquet")) == n:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    vocab = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(20_000)], dtype=object)
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    domains = np.array([f"site{i}.com" for i in range(2000)], dtype=object)
    subs = np.array(
        ["news", "science", "worldnews", "programming", "politics", "technology", "books", "history"], dtype=object
    )
    for start in range(0, n, FILE_DOCS):
        count = min(FILE_DOCS, n - start)
        lengths = np.clip(rng.lognormal(5.7, 0.9, count).astype(int), 20, 20_000)
        words = vocab[rng.choice(len(vocab), int(lengths.sum()), p=p)]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        texts = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(count)]
        doc_domains = domains[np.minimum(rng.zipf(1.3, count), len(domains)) - 1]
        urls = [f"https://{d}/{seed}/{start + i}" for i, d in enumerate(doc_domains)]
        table = pa.table(
            {
                "id": [hashlib.sha256(u.encode()).hexdigest()[:32] for u in urls],
                "url": urls,
                "domain": doc_domains.tolist(),
                "subreddits": [[s] for s in subs[rng.integers(0, len(subs), count)]],
                "created_utc": rng.integers(1_118_000_000, 1_600_000_000, count),
                "text": texts,
                "n_words": lengths.astype(np.int32),
                "n_tokens": (lengths * 1.3).astype(np.int32),
            }
        )
        pq.write_table(table, folder / f"part-{start // FILE_DOCS:05d}.parquet", row_group_size=5000)


# -- one writer run in a fresh process, with its tree's peak RSS ---------------------------------------


OURS = """
import json, sys, time
from webtext.core.config import ShardConfig
from webtext.core.runner import init_ray, run_stage
from webtext.shards import SHARDS
init_ray()
start = time.perf_counter()
run_stage(SHARDS, [sys.argv[1]], sys.argv[2], ShardConfig(**json.loads(sys.argv[3])), force=True)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

BASELINE = """
import json, math, sys, time
import pyarrow.dataset as pads, pyarrow.parquet as pq
from pathlib import Path
from webtext.core.schemas import SHARD, conform
start = time.perf_counter()
config = json.loads(sys.argv[3])
table = conform(pads.dataset(sys.argv[1], format="parquet").to_table(), SHARD).sort_by("id")
out = Path(sys.argv[2]) / "data"
out.mkdir(parents=True, exist_ok=True)
limit = config["max_rows_per_shard"]
count = max(1, math.ceil(table.num_rows / limit))
for i in range(count):
    pq.write_table(table.slice(i * limit, limit), out / f"shard-{i:05d}-of-{count:05d}.parquet",
                   row_group_size=config["row_group_rows"], compression="zstd")
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _hwm_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process in kB; zeros when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(("VmHWM", "VmRSS"))}
    return values.get("VmHWM", 0), values.get("VmRSS", 0)


def run_measured(script: str, args: list[str]) -> dict:
    env = os.environ | {"RAY_ADDRESS": "local"}  # a fresh local Ray, never another user's cluster
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    peak_process, names, peak_total, done = {}, {}, 0, threading.Event()

    def sample():
        nonlocal peak_total
        while not done.is_set():
            tree, pids, total = _children(), [proc.pid], 0
            i = 0
            while i < len(pids):
                pids += tree.get(pids[i], [])
                i += 1
            for pid in pids:
                hwm, rss = _hwm_kb(pid)
                if pid not in names:
                    try:
                        names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[-40:]
                    except OSError:
                        pass
                peak_process[pid] = max(peak_process.get(pid, 0), hwm)
                total += rss
            peak_total = max(peak_total, total)
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"writer run failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    top = max(peak_process, key=peak_process.get)
    result["peak_process_mb"] = peak_process[top] / 1024
    result["peak_process"] = names.get(top, "?")
    result["peak_driver_mb"] = peak_process.get(proc.pid, 0) / 1024
    result["peak_total_mb"] = peak_total / 1024
    return result


# -- streaming reads --------------------------------------------------------------------------------


def rewrite(docs: Path, out: Path, shard_rows: int, group_rows: int) -> list[Path]:
    """The first files of `docs` as shards of `shard_rows` rows and row groups of `group_rows` (the stage's options)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files, index, writer, written = [], 0, None, 0
    for batch in pq.ParquetFile(sorted(docs.glob("*.parquet"))[0]).iter_batches(batch_size=group_rows):
        if writer is None or written >= shard_rows:
            if writer:
                writer.close()
            files.append(out / f"shard-{index:05d}.parquet")
            writer, written, index = pq.ParquetWriter(files[-1], batch.schema, compression="zstd"), 0, index + 1
        writer.write_table(pa.Table.from_batches([batch]), row_group_size=group_rows)
        written += batch.num_rows
    writer.close()
    return files


def stream(files: list[Path], python: bool) -> dict:
    """Read `text` row group by row group; `python=True` also makes Python strings (as the loader does)."""
    docs = 0
    start, cpu = time.perf_counter(), time.process_time()
    for path in files:
        f = pq.ParquetFile(path)
        for group in range(f.num_row_groups):
            column = f.read_row_group(group, columns=["text"]).column("text")
            docs += len(column.to_pylist()) if python else len(column)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = sum(p.stat().st_size for p in files)
    return {
        "docs_per_s": docs / seconds,
        "mb_per_s": size / 2**20 / seconds,
        "docs_per_cpu_s": docs / cpu,
        "mb_per_cpu_s": size / 2**20 / cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--work", type=Path, default=Path("/tmp/shards-bench"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-rows", type=int, default=None, help="max_rows_per_shard (default: the config's)")
    p.add_argument("--skip-write", action="store_true")
    p.add_argument("--skip-read", action="store_true")
    p.add_argument(
        "--baseline-max",
        type=int,
        default=300_000,
        help="largest corpus the in-memory baseline runs on (its memory grows)",
    )
    args = p.parse_args()
    from webtext.core.config import ShardConfig

    defaults = ShardConfig()
    config = {
        "max_rows_per_shard": args.max_rows or defaults.max_rows_per_shard,
        "row_group_rows": defaults.row_group_rows,
    }
    print(f"config {config}; {os.cpu_count()} CPUs")
    for n in args.docs:
        generate(n, args.work / f"docs-{n}")
    if not args.skip_write:
        results: dict = {}
        for round_ in range(args.rounds):
            for n in args.docs:
                for name, script in (("stage", OURS), ("in-memory", BASELINE)):
                    if name == "in-memory" and n > args.baseline_max:
                        continue
                    out = args.work / f"out-{name}-{n}"
                    shutil.rmtree(out, ignore_errors=True)
                    r = run_measured(script, [str(args.work / f"docs-{n}"), str(out), json.dumps(config)])
                    results.setdefault((name, n), []).append(r)
                    print(
                        f"round {round_} {name:>9} {n:>9,} docs: {r['seconds']:7.1f} s, peak process {r['peak_process_mb']:7.0f} MB, "
                        f"({r['peak_process']}), driver {r['peak_driver_mb']:6.0f} MB, tree {r['peak_total_mb']:7.0f} MB",
                        flush=True,
                    )
        print("\nwriting (median of rounds):")
        for n in args.docs:
            ours = {
                k: float(np.median([r[k] for r in results[("stage", n)]]))
                for k in ("seconds", "peak_process_mb", "peak_total_mb")
            }
            if ("in-memory", n) not in results:
                print(
                    f"  {n:>9,} docs: stage {ours['seconds']:.1f} s ({n / ours['seconds']:,.0f} docs/s), largest process "
                    f"{ours['peak_process_mb']:.0f} MB, tree {ours['peak_total_mb']:.0f} MB | in-memory not run (memory)"
                )
                continue
            base = {
                k: float(np.median([r[k] for r in results[("in-memory", n)]])) for k in ("seconds", "peak_process_mb")
            }
            print(
                f"  {n:>9,} docs: stage {ours['seconds']:.1f} s ({n / ours['seconds']:,.0f} docs/s), largest process {ours['peak_process_mb']:.0f} MB, "
                f"tree {ours['peak_total_mb']:.0f} MB | in-memory {base['seconds']:.1f} s, {base['peak_process_mb']:.0f} MB | "
                f"time ratio {ours['seconds'] / base['seconds']:.2f}, peak-process ratio {ours['peak_process_mb'] / base['peak_process_mb']:.2f}"
            )
    if args.skip_read:
        return
    print("\nstreaming reads of `text` (first input file, 50k docs), alternated, best of 5 (noise only slows):")
    sample = args.work / f"docs-{args.docs[0]}"
    layouts = [
        (10_000, 1_000),
        (10_000, 250),
        (10_000, 4_000),
        (50_000, 1_000),
        (50_000, 4_000),
        (50_000, 16_000),
        (config["max_rows_per_shard"], config["row_group_rows"]),
    ]
    layouts = list(dict.fromkeys(layouts))
    written = {layout: rewrite(sample, args.work / f"read-{layout[0]}-{layout[1]}", *layout) for layout in layouts}
    for python in (False, True):
        figures: dict = {layout: [] for layout in layouts}
        for _ in range(5):
            for layout in layouts:
                figures[layout].append(stream(written[layout], python))
        base = max(f["docs_per_cpu_s"] for f in figures[(10_000, 1_000)])
        print(
            f"  {'arrow column' if not python else 'python strings'} (wall; and per CPU-second, the steadier figure on a shared machine):"
        )
        for layout in layouts:
            docs, mb = max(f["docs_per_s"] for f in figures[layout]), max(f["mb_per_s"] for f in figures[layout])
            cpu_docs, cpu_mb = (
                max(f["docs_per_cpu_s"] for f in figures[layout]),
                max(f["mb_per_cpu_s"] for f in figures[layout]),
            )
            print(
                f"    shard {layout[0]:>6,} rows, row group {layout[1]:>6,}: {docs:>9,.0f} docs/s {mb:>5.0f} MB/s | "
                f"{cpu_docs:>9,.0f} docs/CPU-s {cpu_mb:>5.0f} MB/CPU-s  (x{cpu_docs / base:.2f} vs 10k/1k)"
            )


if __name__ == "__main__":
    main()
