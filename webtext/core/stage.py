"""The stage contract: what a stage declares so that one runner can run it anywhere.

A stage is data, not plumbing: its name (also its command, config section and output folder), what
it counts, the input columns it requires and the optional ones with their defaults, its output
schema, the resources one worker needs, and a setup that turns the stage's config section into a
batch function. The batch function takes an Arrow table and returns the same rows, in the same
order, with the stage's output columns and `drop_reason` (null: kept), and may add `outcomes` (a list of
labels per row, e.g. what a cleaning rule removed), counted into the stage's non-dropping outcomes
and never written. Everything else (reading,
Ray scheduling, writing, counting, completion markers) is the runner's job (`webtext.core.runner`).

Stages whose work is not one pass over rows (harvest's merge, the crawl's units, dedup's clusters,
shard writing) declare `plan`: a function of a `webtext.core.runner.Run` that composes the runner's
steps (map, bucket, reduce) and returns the stage's stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

DROP_REASON = "drop_reason"
OUTCOMES = "outcomes"  # optional list<string> column: labels counted per stage, not written

BatchFn = Callable[[pa.Table], pa.Table]
Default = Callable[[pa.Table], pa.Array]  # the value of an absent optional column, from the batch


class StageError(RuntimeError):
    """A stage that failed; the message is one line naming the stage and what failed."""


class AccountingError(StageError):
    """Rows came in that neither went out nor were dropped under a reason."""


class InputError(ValueError):
    """An input that a stage cannot read: missing column, wrong type, unreadable file (exit 2)."""


def stage_task(fn: Callable, item: Any) -> Any:
    """The Ray task behind `Run.tasks`. It lives here, not in the runner, so that a task's worker
    imports only the stage's own modules: the runner pulls in Ray Data and pandas (~50 MB a worker)."""
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
    # reservations then ran one task at a time on a 2-CPU node (measured): prefer it for `Run.tasks`
    memory: int | None = None
    actors: int | None = None
    batch_size: int = 256
    isolated: bool = False  # a fresh process per task (Twisted's reactor cannot restart in one process)
    env: tuple[tuple[str, str], ...] = ()  # environment of the worker processes (Ray gives them workers of their own)


def null_default(type_: pa.DataType) -> Default:
    return lambda batch: pa.nulls(batch.num_rows, type_)


def constant_default(value: Any, type_: pa.DataType) -> Default:
    return lambda batch: pa.array([value] * batch.num_rows, type_)


@dataclass(frozen=True)
class Stage:
    name: str  # command, config section and output folder
    unit: str  # what its counts count: submissions, urls, pages, documents
    required: dict[str, pa.DataType]
    output: pa.Schema
    setup: Callable[[Any], BatchFn] | None = None  # config section -> batch function (map stages)
    optional: dict[str, tuple[pa.DataType, Default]] = field(default_factory=dict)
    resources: Resources = Resources()
    plan: Callable[[Any], Any] | None = None  # multi-step stages: Run -> StageStats
    # A plan that resumes its own partial work (the crawl's units): the runner keeps `out` when the
    # marker is absent or stale, and the plan must itself discard what no longer matches.
    resumable: bool = False
    # Required columns in which a null is bad input (one line naming file and column, exit 2),
    # checked from the Parquet footers' statistics before anything runs.
    non_null: tuple[str, ...] = ()
    description: str = ""

    @property
    def error_reason(self) -> str:
        """The drop reason of a row that makes the batch function raise."""
        return f"{self.name}_error"

    def input_columns(self) -> dict[str, pa.DataType]:
        return {**self.required, **{name: type_ for name, (type_, _) in self.optional.items()}}
