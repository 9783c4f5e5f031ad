"""Crash and resume, for real: `webtext build` (a subprocess) is SIGKILLed during each stage in turn,
and rerun with the same config each time. The final shards must hold exactly the ids and texts of an
uninterrupted build, the funnel must count every record once, stages that had finished before a kill
must not be redone (their completion marker untouched), and no `*.tmp` file may be left. The stages of
several steps (harvest, dedup, shards) are killed inside a late step, once the steps before it have
finished: the rerun must resume at that step, the earlier steps not redone (the times at which they
finished, from their markers, stay those of the killed run).

The first run starts its own embedded Ray, as `webtext build` does on a laptop, so the kill takes
Ray's own processes with it; the later runs join the test session's Ray (as under `ray job submit`,
where the driver dies but the cluster lives on), which also keeps the chain fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import ray
import yaml

from webtext import pipeline
from webtext.core.config import load_config
from webtext.core.manifest import read_manifest
from webtext.core.runner import MARKER
from webtext.demo.dump import write_dump
from webtext.demo.run import demo_evalset, paragraphs
from webtext.demo.site import DemoSite

BIN = Path(sys.executable).parent
STAGES = ["harvest", "crawl", "extract", "dedup", "decontaminate", "shards"]
# the step of a multi-step stage that the kill lands in, and the steps finished before it
LATE_STEP = {
    "harvest": ("merge", ["read"]),
    "dedup": ("components", ["signatures", "candidates", "pairs", "verify"]),
    "shards": ("gather", ["scatter"]),
}
# Once OUT/<stage> exists, the kill waits for the stage's first file (a part, a scratch file, a
# temporary), so that it lands with partial work on disk; at most this long.
SETTLE_S = 20.0


def write_config(folder: Path, out_dir: str, dump: Path, evalset: Path) -> Path:
    path = folder / f"{out_dir}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dumps": [str(dump)],
                "out_dir": out_dir,
                "ray": {"num_cpus": 2, "object_store_memory_mb": 128},
                "harvest": {"buckets": 8},  # several merge tasks, so the merge step lasts long enough to be cut
                "crawl": {"allowed_networks": ["127.0.0.0/8"], "timeout_s": 5.0, "retries": 0, "autothrottle": False},
                "decontaminate": {"evalsets": [str(evalset)]},
                "shards": {"max_rows_per_shard": 4},  # several shard files, so shard writing has steps to cut
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory, local_ray):
    """The demo site with few articles (serving for the whole module), its dump, and one
    uninterrupted reference build."""
    folder = tmp_path_factory.mktemp("crash")
    evalset = demo_evalset(folder)
    with DemoSite(seed=3, n_articles=10, eval_passages=paragraphs(evalset)[:1], slow_seconds=0.2) as site:
        dump = folder / "RS_crash.zst"
        write_dump(dump, site.links(), seed=3)
        pipeline.build(load_config(write_config(folder, "reference", dump, evalset)))
        yield folder, dump, evalset


def documents(out: Path) -> dict[str, str]:
    table = pq.read_table(out / "shards" / "data", columns=["id", "text"])
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def funnel(out: Path) -> list[dict]:
    """Every stage's counts from the manifest (wall time aside)."""
    return [
        {k: v for k, v in stage.items() if k != "seconds"} for stage in read_manifest(str(out / "shards"))["funnel"]
    ]


def something_written(folder: Path) -> bool:
    return any(p.is_file() for p in folder.rglob("*"))


def step_started(out: Path, stage: str) -> bool:
    """The stage's late step has begun writing, every step before it finished."""
    step, earlier = LATE_STEP[stage]
    scratch = out / stage / "_scratch"
    if not all((scratch / s / MARKER).exists() for s in earlier):
        return False
    if step == "components":
        return something_written(scratch / step)
    return any(p.is_file() for p in (out / stage).rglob("*") if "_scratch" not in p.relative_to(out / stage).parts)


def kill_during(config: Path, out: Path, stage: str, env: dict) -> tuple[bool, int]:
    """Start `webtext build`, SIGKILL it once OUT/<stage> exists without its marker and holds a first
    file (or SETTLE_S passed), or for a stage of several steps once its late step wrote a first file;
    returns whether the stage was still unfinished after the kill, and how many of the build's own
    processes outlived it (they are killed here, by PID)."""
    log = open(out.parent / f"{out.name}-{stage}.log", "w")
    build = subprocess.Popen(
        [str(BIN / "webtext"), "build", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    folder, marker = out / stage, out / stage / MARKER
    descendants: dict[int, psutil.Process] = {}
    seen, scanned = None, 0.0
    try:
        while True:  # tight: a short stage (shards, decontaminate) lasts a few hundred ms
            now = time.monotonic()
            if folder.is_dir():
                assert not marker.exists(), f"{stage} completed before its first file was seen"
                seen = seen or now
                if stage in LATE_STEP:
                    if step_started(out, stage):
                        break
                elif something_written(folder) or now - seen >= SETTLE_S:
                    break
            assert build.poll() is None, f"build ended (rc {build.returncode}) before {stage}: {log.name}"
            if now - scanned > 0.2:  # its processes (an embedded Ray's), to clean up after the kill
                with contextlib.suppress(psutil.Error):
                    descendants.update({c.pid: c for c in psutil.Process(build.pid).children(recursive=True)})
                scanned = now
            time.sleep(0.002)
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
        unfinished = not marker.exists()
    finally:
        if build.poll() is None:
            build.kill()
        log.close()
    time.sleep(1.0)
    survivors = []
    for p in descendants.values():
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()  # Ray's agents outlive a SIGKILLed embedded driver; never let them linger
                survivors.append(p.pid)
    return unfinished, len(survivors)


def markers(out: Path) -> dict[str, int]:
    return {s: (out / s / MARKER).stat().st_mtime_ns for s in STAGES if (out / s / MARKER).exists()}


def step_times(out: Path, stage: str) -> dict[str, float]:
    """When each step of the stage finished, from the steps' markers (a killed run) or the stage's."""
    marker = out / stage / MARKER
    if marker.exists():
        return json.loads(marker.read_text())["steps"]
    scratch = out / stage / "_scratch"
    return {p.parent.name: json.loads(p.read_text())["finished"] for p in scratch.glob(f"*/{MARKER}")}


def test_kill_during_every_stage_then_rerun_gives_the_uninterrupted_corpus(demo):
    folder, dump, evalset = demo
    reference = folder / "reference"
    out = folder / "crashed"
    config = write_config(folder, "crashed", dump, evalset)
    embedded = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    joined = {**embedded, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    finished: dict[str, int] = {}
    steps: dict[str, dict[str, float]] = {}  # per stage killed in a late step: when its earlier steps finished
    record = []
    for stage in STAGES:
        unfinished, survivors = kill_during(config, out, stage, embedded if stage == "harvest" else joined)
        assert unfinished, f"the kill landed after {stage} completed"
        now = markers(out)
        # stages finished in an earlier run were skipped, not redone
        assert {s: now[s] for s in finished} == finished, stage
        finished.update(now)
        assert stage not in finished
        for killed, times in steps.items():  # the stage killed before resumed at its late step
            late, earlier = LATE_STEP[killed]
            now_times = step_times(out, killed)
            assert {s: now_times[s] for s in earlier} == times, f"{killed}: an earlier step was redone"
            assert now_times[late] > max(times.values())
        steps.clear()
        if stage in LATE_STEP:
            late, earlier = LATE_STEP[stage]
            times = step_times(out, stage)
            assert set(times) == set(earlier), f"{stage}: killed with steps {sorted(times)} finished"
            steps[stage] = times
        partial = out / stage
        record.append(
            (stage, len(list(partial.rglob("*.tmp"))), len([f for f in partial.rglob("*") if f.is_file()]), survivors)
        )
    final = subprocess.run(
        [str(BIN / "webtext"), "build", str(config)], env=joined, capture_output=True, text=True, timeout=600
    )
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert {s: markers(out)[s] for s in finished} == finished
    assert {s: step_times(out, "shards")[s] for s in LATE_STEP["shards"][1]} == steps["shards"]
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    assert not list(out.rglob("_scratch"))
    got, want = documents(out), documents(reference)
    assert got == want and len(want) > 5
    assert funnel(out) == funnel(reference)
    print("kills (stage, *.tmp left, files left, processes outliving the driver):", record)
