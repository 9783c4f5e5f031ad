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

The stage runs through `run_stage` on a local Ray (start time reported apart); its CPU time is what
its Ray worker processes spent while it ran (psutil, the workers under this driver, a new worker's
start included), its wall time per step comes from the finish times the runner records in the
stage's marker. Peak RSS is the workers' (the kernel's VmHWM) and the driver's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
import psutil  # noqa: E402
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


def _workers() -> dict[tuple[int, float], psutil.Process]:
    """The Ray worker processes under this driver (their titles start with `ray::`), by pid and start."""
    found = {}
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if " ".join(p.cmdline()[:1]).startswith("ray::"):
                found[(p.pid, p.create_time())] = p
    return found


def _cpu(processes: dict[tuple[int, float], psutil.Process]) -> dict[tuple[int, float], float]:
    seconds = {}
    for key, p in processes.items():
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            seconds[key] = times.user + times.system
    return seconds


def _peak_mb(pid: int) -> float:
    """A process's peak RSS (the kernel's VmHWM), 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def project(paths: list[str], out: Path) -> tuple[int, float, float, dict[str, float], float]:
    """Run the stage; (records, wall s, CPU s of the Ray workers, wall s per step, the workers' peak RSS
    in MB). The step times come from the finish times the runner records in the stage's marker (each
    step's `_scratch/<step>/_COMPLETE.json`, kept as `steps` in the stage's own marker)."""
    shutil.rmtree(out, ignore_errors=True)
    before = _cpu(_workers())
    start, t = time.time(), time.perf_counter()
    stats = runner.run_stage(HARVEST, paths, str(out), HarvestConfig())
    wall = time.perf_counter() - t
    workers = _workers()
    after = _cpu(workers)
    finished = json.loads((out / runner.MARKER).read_text())["steps"]
    steps, previous = {}, start
    for step in HARVEST.steps:
        steps[step.name], previous = finished[step.name] - previous, finished[step.name]
    peak = max((_peak_mb(pid) for pid, _ in workers), default=0.0)
    return stats.input, wall, sum(after[k] - before.get(k, 0.0) for k in after), steps, peak


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
    peak = 0.0
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
        n, wall, cpu, steps, task_peak = project(args.dumps, out)
        peak = max(peak, task_peak)
        rates["stage"].append((n / wall, n / cpu))
        print(
            "round %d: " % r
            + " | ".join(f"{k} {v[-1][0]:,.0f}/s wall, {v[-1][1]:,.0f}/cpu-s" for k, v in rates.items())
            + f" | stage workers' CPU {cpu:.2f} s, wall s per step: "
            + ", ".join(f"{name} {seconds:.2f}" for name, seconds in steps.items()),
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
        f"peak RSS: Ray worker processes max {peak:.0f} MB; driver {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
