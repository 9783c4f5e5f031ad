"""Worker failure, for real: a Ray worker process dies (SIGKILL) while a stage runs; the runner's
lost tasks are retried and the stage's result and counts equal those of an undisturbed run.

Covered for both kinds of stage: a map stage (Ray Data tasks fused with the write of a part file)
and a stage of steps (Ray tasks run by the runner). The killing is test code: a batch function (or task) that
kills its own process the first time it sees a chosen row, remembered by a marker file, and a
worker killed from outside by PID while its task runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.core import storage
from webtext.core.runner import run_stage
from webtext.core.stage import DROP_REASON, Resources, Stage, Step, StepContext
from webtext.core.stats import StageStats

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def die_once(marker: str | None) -> None:
    """SIGKILL this process unless `marker` exists (created first, so the retry lives)."""
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)


def dying_rule(config: dict):
    """Upper-cases texts, drops texts containing "drop"; kills its worker on the victim row once."""

    def fn(batch: pa.Table) -> pa.Table:
        if config["victim"] in batch.column("id").to_pylist():
            die_once(config.get("marker"))
        upper = batch.set_column(1, "text", pc.utf8_upper(batch.column("text")))
        dropped = pc.if_else(pc.match_substring(batch.column("text"), "drop"), "unwanted", pa.scalar(None, pa.string()))
        return upper.append_column(DROP_REASON, dropped)

    return fn


MAP_STAGE = Stage(
    name="toy",
    unit="documents",
    required={"id": pa.string(), "text": pa.string()},
    output=SCHEMA,
    setup=dying_rule,
    resources=Resources(batch_size=50),
)


def write_inputs(folder: Path, files: int = 4, rows: int = 200) -> Path:
    folder.mkdir()
    for f in range(files):
        ids = [f"{f}-{i:04d}" for i in range(rows)]
        texts = [f"text {f} {i}" + (" drop" if i % 9 == 0 else "") for i in range(rows)]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / f"in-{f}.parquet", row_group_size=50)
    return folder


def rows_of(folder: Path) -> list[tuple[str, str]]:
    table = pq.read_table(folder, columns=["id", "text"])
    return sorted(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def counts(stats: StageStats) -> dict:
    return {k: v for k, v in stats.to_dict().items() if k != "seconds"}


def test_map_stage_worker_killed_mid_batch_is_retried_to_the_same_result(tmp_path, local_ray):
    inputs = write_inputs(tmp_path / "in")
    marker = str(tmp_path / "killed-once")
    clean = run_stage(MAP_STAGE, [str(inputs)], str(tmp_path / "clean"), {"victim": "2-0120", "marker": None})
    hit = run_stage(MAP_STAGE, [str(inputs)], str(tmp_path / "hit"), {"victim": "2-0120", "marker": marker})
    assert os.path.exists(marker)  # the worker really died once
    assert counts(hit) == counts(clean) and clean.input == 800 and clean.dropped["unwanted"] == 4 * 23
    assert rows_of(tmp_path / "hit") == rows_of(tmp_path / "clean")
    assert not list((tmp_path / "hit").rglob("*.tmp"))


# -- a stage of steps: Ray tasks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    source: str
    target: str
    marker: str | None  # the task whose worker dies once
    pause: float


def copy_file(item: Copy) -> dict:
    """One task: read an input file, write its rows upper-cased to its part file; counts only."""
    source, target, marker, pause = item.source, item.target, item.marker, item.pause
    time.sleep(pause)
    die_once(marker)
    table = pq.read_table(source)
    table = table.set_column(1, "text", pc.utf8_upper(table.column("text")))
    storage.write_parquet(target, table)
    return {"rows": table.num_rows}


def copies(ctx: StepContext) -> list[Copy]:
    victim, pause = ctx.config["victim"], ctx.config["pause"]
    return [
        Copy(f, storage.join(ctx.out, f"part-{i:05d}.parquet"), ctx.config["marker"] if i == victim else None, pause)
        for i, f in enumerate(ctx.files)
    ]


def copied(ctx: StepContext, results: list[dict]) -> None:
    ctx.stats.output += sum(result["rows"] for result in results)


STEPS_STAGE = Stage(
    name="toysteps",
    unit="documents",
    required={},
    output=SCHEMA,
    steps=(Step("copy", copy_file, copies, copied, Resources(num_cpus=1)),),
)


def test_step_task_whose_worker_dies_is_retried(tmp_path, local_ray):
    inputs = write_inputs(tmp_path / "in")
    marker = str(tmp_path / "killed-once")
    clean = run_stage(STEPS_STAGE, [str(inputs)], str(tmp_path / "clean"), {"victim": -1, "marker": marker, "pause": 0})
    hit = run_stage(STEPS_STAGE, [str(inputs)], str(tmp_path / "hit"), {"victim": 1, "marker": marker, "pause": 0})
    assert os.path.exists(marker)
    assert counts(hit) == counts(clean) and clean.output == 800
    assert rows_of(tmp_path / "hit") == rows_of(tmp_path / "clean")


def test_step_worker_killed_from_outside_is_retried(tmp_path, local_ray):
    """A worker SIGKILLed by PID (as the OOM killer would) while its task sleeps in the middle."""
    inputs = write_inputs(tmp_path / "in")
    clean = run_stage(STEPS_STAGE, [str(inputs)], str(tmp_path / "clean"), {"victim": -1, "marker": None, "pause": 0})
    outcome: dict = {}

    def stage():
        try:
            outcome["stats"] = run_stage(
                STEPS_STAGE, [str(inputs)], str(tmp_path / "hit"), {"victim": -1, "marker": None, "pause": 3.0}
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=stage)
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = process.info["cmdline"] or []
            # a worker running the step's task is titled `ray::stage_task`; its parent, the raylet, is
            # this process's child (other agents' Rays run on this machine too)
            if cmdline[:1] == ["ray::stage_task"] and _grandparent(process) == os.getpid():
                process.kill()
                killed = process.pid
                break
        time.sleep(0.05)
    thread.join(timeout=300)
    assert killed is not None, "no worker running a task was found to kill"
    assert "error" not in outcome, outcome.get("error")
    assert counts(outcome["stats"]) == counts(clean)
    assert rows_of(tmp_path / "hit") == rows_of(tmp_path / "clean")


def _grandparent(process: psutil.Process) -> int | None:
    try:
        return process.parent().ppid()
    except (psutil.Error, AttributeError):
        return None
