"""The stage contract and its runner on a real local Ray: accounting, foreign input, errors, markers."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from webtext.core import runner, storage
from webtext.core.runner import MARKER, AccountingError, InputError, run_stage
from webtext.core.stage import DROP_REASON, Resources, Stage, Step, constant_default

OUTPUT = pa.schema([("id", pa.string()), ("text", pa.string()), ("karma", pa.int64())])


def short_text_rule(config):
    """Drops texts shorter than `config["min"]`; raises on the text "boom" (a hostile document)."""

    def fn(batch: pa.Table) -> pa.Table:
        if "boom" in batch.column("text").to_pylist():
            raise ValueError("cannot handle boom")
        short = pc.less(pc.utf8_length(batch.column("text")), config["min"])
        return batch.append_column(DROP_REASON, pc.if_else(short, "too_short", pa.scalar(None, pa.string())))

    return fn


def losing_rule(config):
    """A buggy stage: it silently loses the first row of every batch."""
    return lambda batch: batch.slice(1).append_column(DROP_REASON, pa.nulls(batch.num_rows - 1, pa.string()))


def toy(setup=short_text_rule) -> Stage:
    return Stage(
        name="toy",
        unit="documents",
        required={"id": pa.string(), "text": pa.string()},
        output=OUTPUT,
        optional={"karma": (pa.int64(), constant_default(0, pa.int64()))},
        setup=setup,
        resources=Resources(batch_size=64),
    )


def write_docs(folder, n=300, files=2):
    for f in range(files):
        ids = [f"{f}-{i}" for i in range(n)]
        texts = ["boom" if (f, i) == (0, 5) else "x" * (i % 7) for i in range(n)]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / f"docs-{f}.parquet", row_group_size=50)
    return folder


def test_counts_every_row_and_drops_only_the_failing_document(tmp_path, local_ray):
    (tmp_path / "in").mkdir()
    docs = write_docs(tmp_path / "in")
    stats = run_stage(toy(), [str(docs)], str(tmp_path / "out"), {"min": 3})
    kept = pq.read_table(tmp_path / "out")
    assert stats.input == 600 and stats.output == kept.num_rows
    assert stats.dropped["toy_error"] == 1  # "boom" made its batch raise; only that row is dropped
    expected_short = sum(1 for f in range(2) for i in range(300) if (f, i) != (0, 5) and i % 7 < 3)
    assert stats.dropped["too_short"] == expected_short
    assert kept.column("karma").to_pylist() == [0] * kept.num_rows  # optional column defaulted
    assert json.loads((tmp_path / "out" / "_stats.json").read_text())["input"] == 600


def test_accounting_check_fires_on_a_stage_that_loses_rows(tmp_path, local_ray):
    (tmp_path / "in").mkdir()
    write_docs(tmp_path / "in", n=100, files=1)
    with pytest.raises(AccountingError, match=r"toy: 100 documents in != \d+ out \+ 0 dropped"):
        run_stage(toy(losing_rule), [str(tmp_path / "in")], str(tmp_path / "out"), {})
    assert not (tmp_path / "out" / MARKER).exists()


def test_foreign_input_errors_name_the_file(tmp_path, local_ray):
    pq.write_table(pa.table({"id": ["a"], "body": ["no text column"]}), tmp_path / "missing.parquet")
    with pytest.raises(InputError, match=r"missing\.parquet: missing required column 'text'"):
        run_stage(toy(), [str(tmp_path / "missing.parquet")], str(tmp_path / "o1"), {"min": 1})
    pq.write_table(pa.table({"id": ["a"], "text": [[1, 2]]}), tmp_path / "typed.parquet")
    with pytest.raises(
        InputError, match=r"typed\.parquet: column 'text' is list<\w+: int64>, the toy stage needs string"
    ):
        run_stage(toy(), [str(tmp_path / "typed.parquet")], str(tmp_path / "o2"), {"min": 1})
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"junk\.parquet: cannot read Parquet input"):
        run_stage(toy(), [str(tmp_path / "junk.parquet")], str(tmp_path / "o3"), {"min": 1})
    with pytest.raises(InputError, match=r"nowhere: no such file or folder"):
        run_stage(toy(), [str(tmp_path / "nowhere")], str(tmp_path / "o4"), {"min": 1})


def test_empty_input_gives_an_empty_output(tmp_path, local_ray):
    pq.write_table(
        pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), tmp_path / "empty.parquet"
    )
    stats = run_stage(toy(), [str(tmp_path / "empty.parquet")], str(tmp_path / "out"), {"min": 1})
    assert (stats.input, stats.output) == (0, 0)
    assert pq.read_table(tmp_path / "out").schema.names == OUTPUT.names


def test_completion_marker_skips_unchanged_and_reruns_changed(tmp_path, local_ray):
    (tmp_path / "in").mkdir()
    write_docs(tmp_path / "in", n=50, files=1)
    out = str(tmp_path / "out")
    first = run_stage(toy(), [str(tmp_path / "in")], out, {"min": 3, "max_error_fraction": 0.05})  # "boom": 1 of 50
    part = storage.list_files(out)[0]
    mtime = storage.info(part).mtime_ns
    again = run_stage(toy(), [str(tmp_path / "in")], out, {"min": 3, "max_error_fraction": 0.05})
    assert again.to_dict() == first.to_dict() and storage.info(part).mtime_ns == mtime  # skipped
    changed = run_stage(
        toy(), [str(tmp_path / "in")], out, {"min": 5, "max_error_fraction": 0.05}
    )  # config changed: rerun
    assert changed.dropped["too_short"] > first.dropped["too_short"]
    write_docs(tmp_path / "in", n=60, files=1)  # input changed: rerun
    assert run_stage(toy(), [str(tmp_path / "in")], out, {"min": 5, "max_error_fraction": 0.05}).input == 60


def test_fingerprint_changes_with_the_code_of_the_stage(tmp_path, monkeypatch):
    """An upgraded stage package redoes its stage: the marker fingerprint covers the package's sources."""
    package = tmp_path / "toystage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text("def setup(config):\n    return lambda batch: batch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    rules = importlib.import_module("toystage.rules")
    (tmp_path / "in").mkdir()
    write_docs(tmp_path / "in", n=10, files=1)
    inputs = [str(tmp_path / "in")]
    before = runner.fingerprint(toy(rules.setup), inputs, {"min": 3})
    assert runner.fingerprint(toy(rules.setup), inputs, {"min": 3}) == before
    (package / "helpers.py").write_text("LIMIT = 3\n")  # any source file of the package counts
    runner._source_digest.cache_clear()  # a new process after an upgrade
    assert runner.fingerprint(toy(rules.setup), inputs, {"min": 3}) != before


def test_an_error_inside_ray_is_one_line_naming_the_stage_and_file(tmp_path, local_ray):
    from webtext.core.failures import BugError

    def bad_setup(config):
        raise config("model file /models/lid.bin is missing\nsecond line of detail")

    (tmp_path / "in").mkdir()
    write_docs(tmp_path / "in", n=10, files=1)
    with pytest.raises(InputError) as caught:  # bad input, raised where it is checked: exit 2
        run_stage(toy(bad_setup), [str(tmp_path / "in")], str(tmp_path / "o1"), InputError)
    assert str(caught.value) == f"toy: {tmp_path}/in/docs-0.parquet: model file /models/lid.bin is missing"
    with pytest.raises(BugError) as caught:  # any other ValueError is a bug: exit 1, with its traceback
        run_stage(toy(bad_setup), [str(tmp_path / "in")], str(tmp_path / "o2"), ValueError)
    log = tmp_path / "o2" / "_errors.log"
    assert (
        str(caught.value)
        == f"toy: {tmp_path}/in/docs-0.parquet: ValueError: model file /models/lid.bin is missing (traceback in {log})"
    )
    assert "in bad_setup" in log.read_text()  # the worker's traceback
    assert not (tmp_path / "o2" / "_COMPLETE.json").exists()


def task_logging_rule(config):
    """Keeps every row and notes which Ray task mapped the batch."""

    def fn(batch: pa.Table) -> pa.Table:
        import ray

        with open(config["log"], "a") as log:
            log.write(f"{ray.get_runtime_context().get_task_id()}\n")
        return batch.append_column(DROP_REASON, pa.nulls(batch.num_rows, pa.string()))

    return fn


def test_one_input_file_is_mapped_by_every_cpu(tmp_path, local_ray):
    """A Parquet file is one read task and the map is fused into it: a lone file must still be split
    into several map tasks, or one CPU does all the work (whether they overlap depends on free CPUs)."""
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"id": [str(i) for i in range(800)], "text": ["some text"] * 800}), tmp_path / "in" / "one.parquet"
    )
    log = tmp_path / "tasks"
    stats = run_stage(toy(task_logging_rule), [str(tmp_path / "in")], str(tmp_path / "out"), {"log": str(log)})
    assert stats.output == 800
    assert len(set(log.read_text().split())) >= 2


def nice_of_worker(_item):
    import os

    return os.nice(0)


def test_stage_tasks_run_at_the_drivers_priority(tmp_path, local_ray):
    """Ray starts workers at nice 15 by default; stages would lose the CPU to any other process."""
    import os

    assert runner.run_tasks(toy(), nice_of_worker, [1, 2]) == [os.nice(0)] * 2


def arrow_pool_of_worker(_item):
    import pyarrow

    return pyarrow.default_memory_pool().backend_name


def test_a_stage_sets_the_environment_of_its_own_workers(tmp_path, local_ray):
    """The harvest's workers (its reads and merges) run Arrow on the system allocator (less peak RSS); other tasks keep Arrow's default."""
    import pyarrow

    from crawler.harvest import HARVEST_ENV

    env = Resources(num_cpus=1, env=HARVEST_ENV)
    assert runner.run_tasks(toy(), arrow_pool_of_worker, [1, 2], env) == ["system"] * 2
    assert (
        runner.run_tasks(toy(), arrow_pool_of_worker, [1]) == [pyarrow.default_memory_pool().backend_name] != ["system"]
    )


LOCAL_RAY = """
import os, ray
from webtext.core.runner import init_ray
init_ray(address="local", num_cpus=1)
nice = ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote())
print(nice, os.nice(0), int(ray.cluster_resources()["CPU"]))
"""


@pytest.mark.slow
def test_address_local_starts_the_same_embedded_ray():
    """`address: local` (Ray's word for a new local instance) once joined Ray's defaults instead: nice
    15 workers, every CPU of the machine."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_worker_niceness")}
    out = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    worker_nice, driver_nice, cpus = map(int, out.stdout.split()[-3:])
    assert worker_nice == driver_nice and cpus == 1


# -- a multi-step stage: each step marked, a rerun resumes at the first unfinished one ----------------


@dataclass(frozen=True)
class Piece:
    """A toy step's payload: its input, its output, and a log of the calls (outside the stage's folder)."""

    source: str
    target: str
    calls: str
    attempt: int  # which run_stage call made it (a failed run's tasks may still run after it returned)
    fail: bool = False
    resume: bool = False


def add_one(piece: Piece) -> dict:
    """Reads a table of numbers, writes them plus one; returns the row count and the input's mtime."""
    with open(piece.calls, "a") as log:
        log.write(f"{piece.attempt}\n")
    if piece.resume and os.path.exists(piece.target):  # a resumable step's task skips its finished work
        return {"rows": pq.read_metadata(piece.target).num_rows, "source_mtime": os.stat(piece.source).st_mtime_ns}
    if piece.fail:
        time.sleep(0.5)  # the step's first task has written its part by then
        raise RuntimeError("killed in the last step")
    table = pq.read_table(piece.source)
    storage.write_parquet(piece.target, table.set_column(0, "n", pc.add(table.column("n"), 1)))
    return {"rows": table.num_rows, "source_mtime": os.stat(piece.source).st_mtime_ns}


def step_tasks(name: str, previous: str | None):
    """The step's payloads: one per file of the stage's input (first step) or of the previous step."""

    def tasks(ctx) -> list[Piece]:
        last = name == ctx.stage.steps[-1].name
        sources = ctx.files if previous is None else storage.list_files(ctx.folder(previous))
        folder = ctx.out if last else ctx.folder(name)
        fail = last and ctx.context.get("fail", False)  # the step's first task writes its part, the others fail
        calls = str(ctx.context["calls"] / name)
        attempt = ctx.context["attempt"]
        resume = ctx.stage.steps[-1].resumable
        return [
            Piece(s, storage.join(folder, f"part-{i:05d}.parquet"), calls, attempt, fail and i > 0, resume)
            for i, s in enumerate(sources)
        ]

    return tasks


def counted(name: str):
    def finish(ctx, results: list[dict]) -> None:
        ctx.stats.outcomes[f"rows_{name}"] = sum(r["rows"] for r in results)
        if name == ctx.stage.steps[-1].name:
            ctx.stats.output = sum(r["rows"] for r in results)
            storage.write_json(storage.join(ctx.out, "_sources.json"), sorted(r["source_mtime"] for r in results))

    return finish


NUMBERS = pa.schema([("n", pa.int64())])
STEPPED = Stage(
    name="stepped",
    unit="numbers",
    required={"n": pa.int64()},
    output=NUMBERS,
    steps=(
        Step("first", add_one, step_tasks("first", None), counted("first")),
        Step("second", add_one, step_tasks("second", "first"), counted("second")),
        Step("third", add_one, step_tasks("third", "second"), counted("third")),
    ),
)

# its last step resumes, and what it computes does not depend on webtext's code (like the crawl)
RESUMING = dataclasses.replace(
    STEPPED,
    steps=(*STEPPED.steps[:2], dataclasses.replace(STEPPED.steps[2], resumable=True)),
    depends_on_code=False,
)


def calls(folder, attempt: int) -> dict[str, int]:
    """Tasks of each step run by one run_stage call."""
    return {f.name: f.read_text().split().count(str(attempt)) for f in sorted(folder.iterdir())}


def test_a_stage_failed_in_its_last_step_resumes_there_and_keeps_the_earlier_steps(tmp_path, local_ray):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in range(3):
        pq.write_table(pa.table({"n": pa.array(range(f * 10, f * 10 + 7), pa.int64())}), inputs / f"n-{f}.parquet")
    (tmp_path / "calls").mkdir()
    (tmp_path / "calls-clean").mkdir()
    out = tmp_path / "out"
    clean = run_stage(
        STEPPED, [str(inputs)], str(tmp_path / "clean"), {}, context={"calls": tmp_path / "calls-clean", "attempt": 0}
    )

    with pytest.raises(runner.StageError, match="stepped: .*killed in the last step"):
        run_stage(
            STEPPED, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 1, "fail": True}
        )
    assert calls(tmp_path / "calls", 1)["second"] == 3
    marked = {s: json.loads((out / "_scratch" / s / MARKER).read_text()) for s in ("first", "second")}
    assert not (out / "_scratch" / "third" / MARKER).exists() and list(out.glob("part-*.parquet"))  # partial
    second_files = {f.name: f.stat().st_mtime_ns for f in (out / "_scratch" / "second").glob("*.parquet")}

    stats = run_stage(STEPPED, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 2})
    # the first two steps were not run again, the third was, on the second step's untouched files
    assert calls(tmp_path / "calls", 2) == {"first": 0, "second": 0, "third": 3}
    marker = json.loads((out / MARKER).read_text())
    assert {s: marker["steps"][s] for s in marked} == {s: m["finished"] for s, m in marked.items()}
    assert json.loads((out / "_sources.json").read_text()) == sorted(second_files.values())
    assert stats.to_dict() | {"seconds": 0} == clean.to_dict() | {"seconds": 0}
    assert stats.outcomes == {"rows_first": 21, "rows_second": 21, "rows_third": 21}
    assert pq.read_table(out).column("n").to_pylist() == pq.read_table(tmp_path / "clean").column("n").to_pylist()
    assert pq.read_table(out).column("n").to_pylist()[:3] == [3, 4, 5]
    assert not (out / "_scratch").exists()

    # a changed config is another fingerprint: every step runs again
    run_stage(STEPPED, [str(inputs)], str(out), {"other": 1}, context={"calls": tmp_path / "calls", "attempt": 3})
    assert calls(tmp_path / "calls", 3) == {"first": 3, "second": 3, "third": 3}


def test_a_resumable_step_keeps_its_finished_work_across_an_upgrade(tmp_path, local_ray, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in range(3):
        pq.write_table(pa.table({"n": pa.array(range(f * 10, f * 10 + 7), pa.int64())}), inputs / f"n-{f}.parquet")
    for folder in ("calls", "calls-stepped"):
        (tmp_path / folder).mkdir()
    out = tmp_path / "out"
    with pytest.raises(runner.StageError, match="killed in the last step"):
        run_stage(
            RESUMING, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 1, "fail": True}
        )
    finished = {f.name: f.stat().st_mtime_ns for f in out.glob("part-*.parquet")}
    assert list(finished) == ["part-00000.parquet"]
    stepped = run_stage(
        STEPPED,
        [str(inputs)],
        str(tmp_path / "stepped"),
        {},
        context={"calls": tmp_path / "calls-stepped", "attempt": 1},
    )

    monkeypatch.setattr(runner, "_source_digest", lambda module: "another version of webtext")
    stats = run_stage(RESUMING, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 2})
    assert calls(tmp_path / "calls", 2) == {"first": 0, "second": 0, "third": 3}
    assert {f.name: f.stat().st_mtime_ns for f in out.glob("part-00000.parquet")} == finished  # not redone
    assert stats.output == 21 and pq.read_table(out).column("n").to_pylist() == [
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        *range(13, 20),
        *range(23, 30),
    ]
    assert stats.to_dict() | {"seconds": 0} == stepped.to_dict() | {"seconds": 0}
    # a stage that depends on its code runs every step again after the same upgrade
    run_stage(
        STEPPED,
        [str(inputs)],
        str(tmp_path / "stepped"),
        {},
        context={"calls": tmp_path / "calls-stepped", "attempt": 2},
    )
    assert calls(tmp_path / "calls-stepped", 2) == {"first": 3, "second": 3, "third": 3}


def test_a_stage_stopped_before_its_marker_keeps_the_output_of_its_finished_steps(tmp_path, local_ray, monkeypatch):
    """Every step marked, the stage's own marker not written (a kill in between): the rerun runs no
    step again and keeps the last step's output."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    pq.write_table(pa.table({"n": pa.array(range(5), pa.int64())}), inputs / "n.parquet")
    (tmp_path / "calls").mkdir()
    out = tmp_path / "out"
    write_json = storage.write_json

    def stopped(location, value):
        if str(location) == str(out / MARKER):
            raise KeyboardInterrupt("stopped before the stage's marker")
        write_json(location, value)

    monkeypatch.setattr(storage, "write_json", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_stage(STEPPED, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 1})
    monkeypatch.undo()
    stats = run_stage(STEPPED, [str(inputs)], str(out), {}, context={"calls": tmp_path / "calls", "attempt": 2})
    assert calls(tmp_path / "calls", 2) == {"first": 0, "second": 0, "third": 0}
    assert stats.output == 5 and pq.read_table(out).column("n").to_pylist() == [3, 4, 5, 6, 7]
    assert (out / MARKER).exists() and not (out / "_scratch").exists()
