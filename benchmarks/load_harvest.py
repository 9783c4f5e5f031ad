"""Load: `webtext harvest` of a generated N-record dump (default 5M), with the wall time and the peak
RSS of every process of the run (the driver, its embedded Ray: raylet, GCS, agents, and every worker),
sampled every 0.5 s.

Baseline, measured in the same run (alternated with the harvest when --rounds > 1): one process that
only streams the same dump (zstd, 2**31 window) and decodes every line with msgspec — the floor that
any harvest of this dump pays.

    .venv/bin/python benchmarks/load_harvest.py --records 5000000 --work /tmp/load-harvest
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from memory import PeakRSS

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def timed(argv: list[str], log: Path) -> tuple[float, PeakRSS, int]:
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        with PeakRSS(process.pid) as peaks:
            code = peaks.wait()
        process.returncode = code
    return time.perf_counter() - start, peaks, code


def stage_round(
    baseline: list[str], stage: str, inputs: list[str], out: Path, config: Path, work: Path
) -> tuple[dict, dict]:
    """One round: the baseline process, then `webtext <stage> INPUTS --out OUT` on a fresh folder;
    the stage's counts (checked: in == out + dropped) and the figures both runs share."""
    base_s, base_peaks, code = timed(baseline, work / "baseline.log")
    assert code == 0, (work / "baseline.log").read_text()[-2000:]
    shutil.rmtree(out, ignore_errors=True)
    wall, peaks, code = timed(
        [str(BIN / "webtext"), stage, *inputs, "--out", str(out), "--config", str(config)], work / f"{stage}.log"
    )
    assert code == 0, (work / f"{stage}.log").read_text()[-3000:]
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["input"] == stats["output"] + sum(stats["dropped"].values())
    return stats, {
        "wall": wall,
        "baseline_s": round(base_s, 1),
        "ratio": round(wall / base_s, 2),
        "peak_total_mb": round(peaks.total_peak / 2**20),
        "baseline_peak_mb": round(base_peaks.root_peak() / 2**20),
        "processes": peaks.by_role(),
    }


BASELINE = """
import sys, time, msgspec, zstandard
class Sub(msgspec.Struct):
    url: str | None = None
    score: int | float | None = None
start = time.perf_counter()
decoder = msgspec.json.Decoder(Sub)
dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
n, tail = 0, b""
with open(sys.argv[1], "rb") as f, dctx.stream_reader(f) as reader:
    while chunk := reader.read(1 << 20):
        data = tail + chunk
        cut = data.rfind(b"\\n") + 1
        n += len(decoder.decode_lines(data[:cut]))
        tail = data[cut:]
print(n, time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/load-harvest"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    dump = args.work / f"RS_load_{args.records}.zst"
    if not dump.exists():
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(HERE / "harvest_gen.py"), str(dump) + ".part", "--records", str(args.records)],
            check=True,
        )
        Path(str(dump) + ".part").rename(dump)
        print(
            f"generated {dump} ({dump.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    config = args.work / "build.yaml"
    config.write_text(f"ray: {{num_cpus: {args.num_cpus}, object_store_memory_mb: 512}}\n")
    results = []
    for round_ in range(args.rounds):
        stats, figures = stage_round(
            [sys.executable, "-c", BASELINE, str(dump)], "harvest", [str(dump)], args.work / "urls", config, args.work
        )
        wall = figures.pop("wall")
        results.append(
            {
                "round": round_,
                "records": stats["input"],
                "urls": stats["output"],
                "harvest_s": round(wall, 1),
                "records_per_s": round(stats["input"] / wall),
                **figures,
            }
        )
        print(json.dumps(results[-1], indent=1), flush=True)
    print(json.dumps({"summary": [{k: v for k, v in r.items() if k != "processes"} for r in results]}))


if __name__ == "__main__":
    main()
