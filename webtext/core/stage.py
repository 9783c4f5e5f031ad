"""The stage contract: what a stage declares so that one runner can run it anywhere.

A stage is data, not plumbing: its name (also its command, config section and output folder), what
it counts, the input columns it requires and the optional ones with their defaults, its output
schema, the resources one worker needs, and a setup that turns the stage's config section into a
batch function. The batch function takes an Arrow table and returns the same rows, in the same
order, with the stage's output columns and `drop_reason` (null: kept), and may add `outcomes` (a list of
labels per row, e.g. what a cleaning rule removed), counted into the stage's non-dropping outcomes
and never written, and `error` (the traceback of a row it dropped because its code raised). Everything else (reading,
Ray scheduling, writing, counting, completion markers) is the runner's job (`webtext.core.runner`).

Stages whose work is not one pass over rows (harvest's merge, dedup's clusters, shard writing)
declare `steps`: each `Step` names itself, lists its task payloads on the driver (frozen dataclasses,
from the stage's inputs and what earlier steps left), runs a function once per payload in a Ray task,
and folds the small results into the stage's stats and a summary for later steps. Steps hand data to
each other on storage, in the folders the runner gives them (`StepContext.folder`); the runner marks
each finished step, so a stage killed in step k resumes at step k, and a resumable step (the crawl's
fetch) at the work its killed run had not finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from webtext.core import storage

# the failure kinds and column names of the contract, imported by stage code from here
from webtext.core.failures import DROP_REASON as DROP_REASON
from webtext.core.failures import DROPPED, DropSink, keep_of
from webtext.core.failures import ERROR as ERROR
from webtext.core.failures import OUTCOMES as OUTCOMES
from webtext.core.failures import AccountingError as AccountingError
from webtext.core.failures import InputError as InputError
from webtext.core.failures import StageError as StageError
from webtext.core.stats import StageStats

BatchFn = Callable[[pa.Table], pa.Table]
Default = Callable[[pa.Table], pa.Array]  # the value of an absent optional column, from the batch


def stage_task(fn: Callable, item: Any) -> Any:
    """The Ray task behind the runner's `run_tasks`. It lives here, not in the runner, so that a task's worker
    imports only the stage's own modules: the runner pulls in Ray Data and pandas (~50 MB a worker)."""
    return fn(item)


class TaskWorker:
    """The Ray actor behind `run_tasks` for `Resources(threads=n)`: one worker process runs up to n
    tasks at once, in threads, for tasks that mostly wait (a crawl unit waits on the network): more
    tasks in flight than CPUs, with each process's start and imports paid once, not once a task."""

    def run(self, fn: Callable, item: Any) -> Any:
        return fn(item)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs.

    `actors: None` runs the batch function in Ray tasks, its setup cached once per worker process;
    `actors: n` keeps an actor pool of at most n actors (for setups too costly to repeat, e.g. a
    model); the runner caps it so that reads and writes always have a CPU left.
    """

    num_cpus: float = 1.0
    # bytes per worker, reserved from Ray's scheduler; on a map stage Ray Data's per-operator
    # reservations then ran one task at a time on a 2-CPU node (measured): prefer it for steps' tasks
    memory: int | None = None
    actors: int | None = None
    batch_size: int = 256
    threads: int = 1  # tasks one worker process runs at once (TaskWorker); its num_cpus is the process's
    env: tuple[tuple[str, str], ...] = ()  # environment of the worker processes (Ray gives them workers of their own)


def conform_input(stage: Stage, batch: pa.Table) -> pa.Table:
    """Cast the declared columns to their types and add absent optional columns from their defaults."""
    for name, type_ in stage.input_columns().items():
        if name in batch.column_names:
            column = batch.column(name)
            if not column.type.equals(type_):
                batch = batch.set_column(batch.column_names.index(name), name, column.cast(type_))
        else:
            type_, default = stage.optional[name]
            batch = batch.append_column(pa.field(name, type_), default(batch))
    return batch


def null_default(type_: pa.DataType) -> Default:
    return lambda batch: pa.nulls(batch.num_rows, type_)


def constant_default(value: Any, type_: pa.DataType) -> Default:
    return lambda batch: pa.array([value] * batch.num_rows, type_)


@dataclass(frozen=True)
class Step:
    """One step of a multi-step stage (the phases of datatrove's MinHash, as steps of their own).

    `tasks` (driver) lists the step's payloads, frozen dataclasses, from `StepContext`: the checked
    inputs, the folders and summaries of earlier steps. `run` (a Ray task, retried when its worker
    dies) does one payload's work, writing under `ctx.folder(<this step>)` (the last step: `ctx.out`),
    and returns something small: counts, names. `finish` (driver) folds the results into `ctx.stats`
    and returns a JSON summary that later steps read with `ctx.summary(name)`.
    """

    name: str
    run: Callable[[Any], Any]
    tasks: Callable[[StepContext], list]
    finish: Callable[[StepContext, list], Any] | None = None
    # or a function of the context, for what depends on the inputs (the harvest's decompression window)
    resources: Resources | Callable[[StepContext], Resources] = Resources()
    # iterative steps (dedup's label propagation): the tasks run again, round after round (`ctx.round`),
    # until this holds on a round's results
    until: Callable[[list], bool] | None = None
    # True: its tasks skip what a killed run of the step finished (the crawl's units), so when it did not
    # finish, the runner keeps its folder (and, for the last step, the stage's output) for the rerun
    resumable: bool = False


@dataclass
class StepContext:
    """What a step sees on the driver: one run of its stage, built by the runner."""

    stage: Stage
    config: Any
    inputs: list[str]
    # the inputs' files, checked by the runner; `stats.input` counts the Parquet rows, and a step that
    # reads a `.txt` list (`Stage.text_column`) adds its lines
    files: list[str]
    out: str
    stats: StageStats
    funnel: list[dict]  # the funnel recorded by the stage that produced the inputs
    fingerprint: str  # of the stage's inputs, config and code: equal fingerprints, equal inputs
    context: dict = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    round: int = 0

    def folder(self, step: str) -> str:
        """The folder where `step` writes what later steps read; removed when the stage completes."""
        if step not in {s.name for s in self.stage.steps}:
            raise KeyError(f"{self.stage.name} has no step {step!r}")
        return storage.join(self.out, SCRATCH, step)

    def summary(self, step: str) -> Any:
        return self.summaries[step]

    def drops(self, step: str):
        """Where `step`'s tasks hand their dropped rows (`DropSink.write`), for the stage's `_dropped/` examples."""
        return DropSink(storage.join(self.folder(step), DROPPED), keep_of(self.config))


SCRATCH = "_scratch"
TEXT_SUFFIX = ".txt"  # an input with this suffix is a list of the stage's `text_column`


@dataclass(frozen=True)
class Stage:
    name: str  # command, config section and output folder
    unit: str  # what its counts count: submissions, urls, pages, documents
    required: dict[str, pa.DataType]
    output: pa.Schema
    setup: Callable[[Any], BatchFn] | None = None  # config section -> batch function (map stages)
    optional: dict[str, tuple[pa.DataType, Default]] = field(default_factory=dict)
    resources: Resources = Resources()
    steps: tuple[Step, ...] = ()  # multi-step stages, in order
    # False: the inputs are not Parquet (the harvest's dumps); the runner fingerprints them, and the
    # first step reads them
    parquet_inputs: bool = True
    # Inputs ending in .txt are lists of this column, one value per line (the crawl's URL lists).
    text_column: str | None = None
    # False: the result depends on the inputs and config only, not on webtext's code (what a crawl
    # fetched is what the web served), so an upgraded webtext keeps a finished crawl and resumes an
    # unfinished one instead of fetching it again.
    depends_on_code: bool = True
    # Files the config names that the result depends on (decontaminate's eval sets): config -> their
    # locations, fingerprinted like inputs, so that an eval set edited in place redoes the stage.
    reads: Callable[[Any], list[str]] | None = None
    # Required columns in which a null is bad input (one line naming file and column, exit 2),
    # checked from the Parquet footers' statistics before anything runs.
    non_null: tuple[str, ...] = ()
    # Drop reasons the stage's own code gives a row it failed on (extract: extraction_error): with
    # `<name>_error`, they count against the stage's `max_error_fraction`.
    error_reasons: tuple[str, ...] = ()
    description: str = ""

    @property
    def error_reason(self) -> str:
        """The drop reason of a row that makes the batch function raise."""
        return f"{self.name}_error"

    @property
    def budgeted_reasons(self) -> tuple[str, ...]:
        return (self.error_reason, *self.error_reasons)

    def input_columns(self) -> dict[str, pa.DataType]:
        return {**self.required, **{name: type_ for name, (type_, _) in self.optional.items()}}
