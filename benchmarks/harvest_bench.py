"""Harvest stage vs bare loops over the same `.zst` dump: zstd stream + orjson.loads per line, and a
msgspec typed decode per line (and, as the floor, zstd + line splitting alone); runs alternated, CPU seconds and wall seconds both reported (the
machine is shared: CPU time is the steadier per-core figure).

    .venv/bin/python benchmarks/harvest_gen.py /tmp/RS_1m.zst --records 1000000
    .venv/bin/python benchmarks/harvest_bench.py /tmp/RS_1m.zst --rounds 2
    .venv/bin/python benchmarks/harvest_bench.py /tmp/RS_1m.zst /tmp/RS_1m.zst /tmp/RS_1m.zst --cpus 1

With several dumps the bare loops read them one after another and the stage gets them all: on one
Ray CPU its read tasks run one after another in one worker, as the dumps of a large harvest do (a
worker's later dumps reuse its zstd context; the first one pays for a fresh window). Ray keeps its
workers from round to round, so from the second round on the stage's read worker has its imports and
pyarrow's first-call set-up done, but not its window: the merges run in the read workers and free it.
`--fresh` starts a new Ray for every round (not timed), so that every round measures a first dump in a
fresh worker.

The stage runs through `run_stage` on a local Ray (start time reported apart); its CPU time is the
sum over its Ray task processes (read + merge), from each task's own `resource.getrusage`. Peak RSS
is reported per task process and for the driver.
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import orjson  # noqa: E402
import ray  # noqa: E402
import zstandard  # noqa: E402

from crawler.harvest import HARVEST, ZSTD_MAX_WINDOW, Submission  # noqa: E402
from webtext.core import runner  # noqa: E402
from webtext.core.config import HarvestConfig  # noqa: E402


def dump_lines(paths: list[str]):
    """The dumps' lines, one dump after another, as every bare loop reads them: a zstd stream (a fresh
    decompressor per dump, as a plain script has) split by a buffered reader."""
    for path in paths:
        with open(path, "rb") as f:
            yield from io.BufferedReader(
                zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(f), 1 << 20
            )


def bare_lines(paths: list[str]) -> int:
    """The floor every harvest pays: decompress and split lines, no parsing."""
    return sum(1 for _ in dump_lines(paths))


def bare_orjson(paths: list[str]) -> int:
    return sum(1 for line in dump_lines(paths) if orjson.loads(line) is not None)


def bare_msgspec(paths: list[str]) -> int:
    decoder = msgspec.json.Decoder(Submission)
    return sum(1 for line in dump_lines(paths) if decoder.decode(line) is not None)


def _measured(fn):
    """Wrap a task function so that its result carries the CPU seconds and peak RSS of its process."""

    def wrapped(item):
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = fn(item)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return {**result, "_cpu": cpu, "_rss_mb": after.ru_maxrss / 1024}

    return wrapped


TASK_CPU: list[float] = []
TASK_RSS: list[float] = []


def instrument():
    """Route the stage's task functions through `_measured` and collect what they report."""
    original = runner.run_tasks

    def tasks(stage, fn, items, resources=runner.ONE_CPU, desc=""):
        results = original(stage, _measured(fn), items, resources, desc)
        for r in results:
            TASK_CPU.append(r.pop("_cpu"))
            TASK_RSS.append(r.pop("_rss_mb"))
        return results

    runner.run_tasks = tasks


def project(paths: list[str], out: Path) -> tuple[int, float, float]:
    shutil.rmtree(out, ignore_errors=True)
    TASK_CPU.clear()
    t = time.perf_counter()
    stats = runner.run_stage(HARVEST, paths, str(out), HarvestConfig())
    return stats.input, time.perf_counter() - t, sum(TASK_CPU)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dumps", nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="a new Ray every round: every round's stage pays its workers' first-dump costs",
    )
    args = parser.parse_args()
    t = time.perf_counter()
    runner.init_ray(address="local", num_cpus=args.cpus)
    print(f"Ray start: {time.perf_counter() - t:.1f}s (excluded below)")
    cpus = runner.cpus()
    instrument()
    out = Path(tempfile.mkdtemp(prefix="harvest-bench-")) / "harvest"
    rates: dict[str, list[tuple[float, float]]] = {"lines": [], "orjson": [], "msgspec": [], "stage": []}
    for r in range(args.rounds):
        for name, fn in (("lines", bare_lines), ("orjson", bare_orjson), ("msgspec", bare_msgspec)):
            c, t = time.process_time(), time.perf_counter()
            n = fn(args.dumps)
            rates[name].append((n / (time.perf_counter() - t), n / (time.process_time() - c)))
        if args.fresh and r:
            ray.shutdown()
            runner.init_ray(address="local", num_cpus=args.cpus)
        n, wall, cpu = project(args.dumps, out)
        rates["stage"].append((n / wall, n / cpu))
        print(
            "round %d: " % r
            + " | ".join(f"{k} {v[-1][0]:,.0f}/s wall, {v[-1][1]:,.0f}/cpu-s" for k, v in rates.items())
            + f" | stage task CPU s, reads then merges: {[round(c, 2) for c in TASK_CPU]}",
            flush=True,
        )
    best = {k: (max(w for w, _ in v), max(c for _, c in v)) for k, v in rates.items()}
    for base in ("lines", "orjson", "msgspec"):
        # each round's pair ran minutes apart at most: their ratio drifts less with the machine's load
        paired = statistics.median(s[1] / b[1] for s, b in zip(rates["stage"], rates[base]))
        print(
            f"stage / bare {base}: {best['stage'][1] / best[base][1]:.3f}x per CPU second best vs best, "
            f"{paired:.3f}x median of the rounds' ratios, {best['stage'][0] / best[base][0]:.3f}x wall "
            f"(stage on {cpus} CPUs, bare loop on 1)"
        )
    print(
        f"peak RSS: task processes max {max(TASK_RSS):.0f} MB; driver {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
