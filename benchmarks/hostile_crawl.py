"""Peak memory of `webtext crawl` against the hostile test server (tests/hostile_server.py).

    .venv/bin/python benchmarks/hostile_crawl.py [--copies 20]

Every hostile route (10 MB bodies, a 50 MB gzip bomb, slowloris bodies, resets, redirect loops and
40-hop chains, 429/503 with Retry-After, thousands of 3-byte chunks, a wrong charset, malformed
HTML), each URL `--copies` times (query-distinct), crawled by a `webtext crawl` subprocess; prints the
peak RSS of the driver and of every Ray process, and the statuses. The baseline is a plain `python -c
pass` process tree's RSS, for scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.load_harvest import BIN, timed  # noqa: E402
from tests.hostile_server import (
    STATUS_OF_PATH,  # noqa: E402
    HostileServer,  # noqa: E402
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, HostileServer(slow_seconds=3.0) as server:
        urls = [
            f"{server.url(path)}{'&' if '?' in path else '?'}copy={i}"
            for path in STATUS_OF_PATH
            for i in range(args.copies)
        ]
        pq.write_table(pa.table({"url": urls}), Path(tmp) / "urls.parquet")
        argv = [
            str(BIN / "webtext"),
            "crawl",
            str(Path(tmp) / "urls.parquet"),
            "--out",
            str(Path(tmp) / "pages"),
            "--allow-network",
            "127.0.0.0/8",
        ]
        seconds, peaks, code = timed(argv, Path(tmp) / "crawl.log")
        if code:
            raise SystemExit((Path(tmp) / "crawl.log").read_text()[-3000:])
        stats = json.loads((Path(tmp) / "pages" / "_stats.json").read_text())
        base_seconds, base_peaks, _ = timed([sys.executable, "-c", "pass"], Path(tmp) / "base.log")
    print(f"{len(urls)} hostile URLs crawled in {seconds:.1f} s; statuses {stats['outcomes']}")
    print(
        f"peak RSS of the whole process tree {peaks.total_peak / 2**20:.0f} MB "
        f"(a bare `python -c pass`: {base_peaks.total_peak / 2**20:.0f} MB)"
    )
    for name, row in peaks.by_role().items():
        print(f"  {name:<40} {row['processes']:>3} process(es), largest peak {row['max_peak_mb']:>5} MB")


if __name__ == "__main__":
    main()
