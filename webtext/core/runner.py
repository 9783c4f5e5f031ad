"""The runner: every stage runs through here — check inputs, read, map, write, count, mark complete.

Map stages go through Ray Data: the Parquet read is fused with the stage's batch function in one
task, so an actor pool can never starve the read; a custom datasink writes the kept rows of each
write task to its own part file (atomically) and returns the counts of every drop reason, so the
driver only ever holds counts. Multi-step stages (`Stage.steps`) run one step after the other, each
as Ray tasks whose results are small (counts, file names); each finished step leaves a marker
(`_scratch/<step>/_COMPLETE.json`: the stage's fingerprint, the stats so far, the step's summary), so
a rerun resumes at the first step without one; a resumable step (the crawl's fetch) also keeps what
its killed run finished.

Accounting can fail: a stage's input count is the sum of its input files' Parquet row counts, read
from their footers before anything runs; `in == out + dropped` is checked against it, and `out`
against the rows actually written.

A stage's output folder ends with `_stats.json`, then `_COMPLETE.json` (written last, atomically):
the fingerprint of its inputs, config section and code, and the funnel up to it. A rerun skips a
stage whose marker matches and reruns one whose input, config or code changed (a stage that does not
depend on code, the crawl, leaves code out).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data import ActorPoolStrategy
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from webtext.core import failures, storage
from webtext.core.config import ConfigError
from webtext.core.failures import DROPPED, ERRORS_LOG, BugError, DropSampler, ErrorTally
from webtext.core.schemas import conform
from webtext.core.stage import (
    DROP_REASON,
    ERROR,
    OUTCOMES,
    SCRATCH,
    TEXT_SUFFIX,
    AccountingError,
    InputError,
    Resources,
    Stage,
    StageError,
    StepContext,
    TaskWorker,
    conform_input,
    stage_task,
)
from webtext.core.stats import StageStats

log = logging.getLogger(__name__)

MARKER = "_COMPLETE.json"
ONE_CPU = Resources()
STATS = "_stats.json"


# -- inputs -----------------------------------------------------------------------------------------


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    if source.equals(target):
        return True
    try:
        pa.array([], source).cast(target)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def is_text_input(stage: Stage, location: str) -> bool:
    """A `.txt` input of a stage that takes lists of its `text_column`, one value per line."""
    return stage.text_column is not None and location.endswith(TEXT_SUFFIX)


def input_files(stage: Stage, inputs: Iterable[str]) -> list[str]:
    """Parquet files of the given files and folders, and the stage's `.txt` lists given as files."""
    files: list[str] = []
    for location in inputs:
        try:
            if is_text_input(stage, location) and storage.is_file(location):
                files.append(location)
            else:
                files += storage.parquet_files(location)
        except OSError as exc:
            raise InputError(f"{stage.name}: {exc}") from exc
    return files


def check_inputs(stage: Stage, files: list[str]) -> int:
    """Required columns present and of a castable type in every Parquet file; returns their total row
    count (a `.txt` list is counted by the step that reads it)."""
    total = 0
    wanted = stage.input_columns()
    for location in files:
        if is_text_input(stage, location):
            continue
        try:
            metadata = storage.parquet_metadata(location)
            schema = metadata.schema.to_arrow_schema()
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{location}: cannot read Parquet input: {exc}") from exc
        for name, type_ in wanted.items():
            if name not in schema.names:
                if name in stage.required:
                    raise InputError(
                        f"{location}: missing required column {name!r} "
                        f"(the {stage.name} stage needs {', '.join(stage.required)})"
                    )
                continue
            if not _castable(schema.field(name).type, type_):
                raise InputError(
                    f"{location}: column {name!r} is {schema.field(name).type}, the {stage.name} stage needs {type_}"
                )
        for name in stage.non_null:
            nulls = _null_count(metadata, schema.names.index(name)) if name in schema.names else 0
            if nulls:
                raise InputError(
                    f"{location}: column {name!r} has {nulls} null value(s); the {stage.name} stage needs every row to have one"
                )
        total += metadata.num_rows
    return total


def _null_count(metadata, column: int) -> int:
    """Nulls in a column from the footer's row-group statistics (0 when a writer left them out)."""
    nulls = 0
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(column).statistics
        if stats is not None and stats.has_null_count:
            nulls += stats.null_count
    return nulls


# -- the batch function on a worker -----------------------------------------------------------------

_SETUPS: dict[str, Callable] = {}  # per worker process: setup once, reuse for every batch


def _setup(stage: Stage, config: Any) -> Callable[[pa.Table], pa.Table]:
    key = f"{stage.name}:{stage.setup.__module__}.{stage.setup.__qualname__}:{config_fingerprint(config)}"
    if key not in _SETUPS:
        try:
            _SETUPS[key] = stage.setup(config)
        except Exception as exc:  # noqa: BLE001 - a stage that cannot start fails, with one clear line
            raise tagged(exc) from exc
    return _SETUPS[key]


_TAG = re.compile(r"\[webtext (input|storage|\w+)\] ([^\n]*)")


def kind_of(exc: BaseException) -> str:
    """`input` (bad input or config: exit 2), `storage` (unreachable after the storage layer's retries:
    exit 1) or the type name of a bug (exit 1)."""
    if isinstance(exc, (InputError, ConfigError)):
        return "input"
    return "storage" if isinstance(exc, OSError) else type(exc).__name__


def tagged(exc: BaseException) -> RuntimeError:
    """An error carrying its kind and first line through Ray Data, whose wrappers keep only the text of
    the original exception; the traceback follows the tagged line, for `_errors.log`."""
    return RuntimeError(f"[webtext {kind_of(exc)}] {_first_line(exc)}\n{failures.format_exception(exc)}")


def apply(stage: Stage, fn: Callable[[pa.Table], pa.Table], batch: pa.Table) -> pa.Table:
    """Run the batch function; when it raises, run it row by row so only the failing rows are
    dropped (as `<stage>_error`), never the batch."""
    batch = conform_input(stage, batch)
    try:
        return _with_inputs(batch, fn(batch))
    except Exception as exc:  # noqa: BLE001 - one bad document must not kill a batch
        log.warning(
            "%s: batch of %d rows failed (%s: %s); retrying row by row",
            stage.name,
            batch.num_rows,
            type(exc).__name__,
            exc,
        )
    parts = []
    for i in range(batch.num_rows):
        row = batch.slice(i, 1)
        try:
            parts.append(fn(row))
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: row %d dropped as %s: %s: %s", stage.name, i, stage.error_reason, type(exc).__name__, exc)
            error = pa.array([failures.format_exception(exc)], pa.string())
            parts.append(
                row.append_column(DROP_REASON, pa.array([stage.error_reason], pa.string())).append_column(ERROR, error)
            )
    schemas = [p.schema for p in parts if p.num_rows]
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    return _with_inputs(batch, pa.concat_tables([_align(p, unified) for p in parts]))


def _with_inputs(batch: pa.Table, result: pa.Table) -> pa.Table:
    """The input columns a person needs to judge a drop (url, html, text) that the output lacks, on
    the dropped rows only: the sink keeps examples of them."""
    if DROP_REASON not in result.column_names:
        return result
    dropped = pc.is_valid(result.column(DROP_REASON))
    for name in ("url", "html", "text"):
        if name in batch.column_names and name not in result.column_names:
            column = batch.column(name)
            result = result.append_column(name, pc.if_else(dropped, column, pa.scalar(None, column.type)))
    return result


def _align(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class _TaskFn:
    """Ray Data task function: setup cached per worker process."""

    def __init__(self, stage: Stage, config: Any):
        self.stage, self.config = stage, config

    def __call__(self, batch: pa.Table) -> pa.Table:
        return apply(self.stage, _setup(self.stage, self.config), batch)


class _ActorFn:
    """Ray Data actor: setup once in the constructor."""

    def __init__(self, stage: Stage, config: Any):
        self.stage = stage
        try:
            self.fn = stage.setup(config)
        except Exception as exc:  # noqa: BLE001
            raise tagged(exc) from exc

    def __call__(self, batch: pa.Table) -> pa.Table:
        return apply(self.stage, self.fn, batch)


class StageSink(Datasink):
    """Writes the kept rows of each write task to `out/part-NNNNN.parquet` and returns its counts.

    The part name is the write task's index, so a retried task replaces its own file atomically.
    """

    def __init__(self, out: str, schema: pa.Schema, keep: int | None, compression: str = "zstd"):
        self.out, self.schema, self.keep, self.compression = out, schema, keep, compression
        self.counts: Counter = Counter()
        self.outcomes: Counter = Counter()  # the batch function's `outcomes` labels, every row's
        self.errors = ErrorTally()  # the messages of rows dropped because code raised
        self.written = 0

    def write(self, blocks, ctx) -> dict:
        counts: Counter = Counter()
        outcomes: Counter = Counter()
        path = storage.join(self.out, f"part-{ctx.task_idx:05d}.parquet")
        rows = 0
        sampler = DropSampler(storage.join(self.out, SCRATCH, DROPPED), self.keep, f"part-{ctx.task_idx:05d}")
        errors = ErrorTally()
        with storage.parquet_writer(path, self.schema, compression=self.compression) as writer:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if not table.num_rows:
                    continue
                reasons = table.column(DROP_REASON)
                for value, n in zip(*(c.to_pylist() for c in reasons.value_counts().flatten())):
                    counts[value] += n
                if OUTCOMES in table.column_names:
                    labels = pc.list_flatten(table.column(OUTCOMES))
                    for value, n in zip(*(c.to_pylist() for c in labels.value_counts().flatten())):
                        outcomes[value] += n
                dropped = table.filter(pc.is_valid(reasons))
                sampler.add(dropped)
                if ERROR in dropped.column_names:
                    errors.add_rows(failures.as_sample(dropped.filter(pc.is_valid(dropped.column(ERROR)))))
                kept = table.filter(pc.is_null(reasons))
                if kept.num_rows:
                    writer.write_table(conform(kept, self.schema))
                    rows += kept.num_rows
        sampler.close()
        kept_count = counts.pop(None, 0)
        return {
            "kept": kept_count,
            "written": rows,
            "dropped": dict(counts),
            "outcomes": dict(outcomes),
            "errors": errors.to_list(),
        }

    def on_write_complete(self, write_result) -> None:
        for result in write_result.write_returns:
            self.written += result["written"]
            self.counts[None] += result["kept"]
            self.counts.update(result["dropped"])
            self.outcomes.update(result["outcomes"])
            self.errors.merge(result["errors"])


# -- one run of a stage -----------------------------------------------------------------------------


def init_ray(
    address: str | None = None, num_cpus: int | None = None, object_store_memory_mb: int | None = None
) -> None:
    """Join the cluster at `address` or RAY_ADDRESS (set under `ray job submit`), else (or with
    `local`, Ray's own word for it) start one here."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=True)
    else:
        # Ray starts its workers at nice 15; the stages are the work, not background chores: the
        # same priority as the driver (and as a bare Scrapy or trafilatura loop) under CPU load.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(
            address="local",  # a new embedded Ray, never a cluster some other `ray start` left behind
            num_cpus=num_cpus,
            object_store_memory=object_store_memory_mb * 2**20 if object_store_memory_mb else None,
            include_dashboard=False,
            configure_logging=True,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty()  # Ray Data's own bars on a terminal only
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _remote_args(resources: Resources) -> dict:
    args: dict[str, Any] = {"num_cpus": resources.num_cpus}
    if resources.memory:
        args["memory"] = resources.memory
    if resources.env:
        args["runtime_env"] = {"env_vars": dict(resources.env)}
    return args


def run_tasks(stage: Stage, fn: Callable, items: list, resources: Resources = ONE_CPU, desc: str = "") -> list:
    """`fn(item)` for every item as Ray tasks (retried if a worker dies), results in item order, items
    started in the given order.

    Results must be small (counts, file names): they come back to the driver. At most a few
    tasks per CPU are in flight, so the driver's memory does not grow with the item count.
    """
    pool = _Workers(resources, len(items)) if resources.threads > 1 else _Tasks(resources)
    results: dict[int, Any] = {}
    pending: dict[Any, tuple[int, int]] = {}
    progress = Progress(f"{stage.name}: {desc or 'tasks'}", len(items))
    queue = list(enumerate(items))
    queue.reverse()
    try:
        while queue or pending:
            while queue and pool.free():
                i, item = queue.pop()
                pending[pool.submit(fn, item)] = i, pool.last
            done, _ = ray.wait(list(pending), num_returns=1, timeout=10)
            for ref in done:
                i, slot = pending.pop(ref)
                pool.release(slot)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise stage_failure(stage, exc, items[i]) from None
                progress.advance(1)
            progress.maybe_print()
    finally:
        pool.close()
    progress.close()
    return [results[i] for i in range(len(items))]


class _Tasks:
    """Plain Ray tasks, a few per CPU in flight."""

    def __init__(self, resources: Resources):
        self.remote = ray.remote(**_remote_args(resources) | {"max_retries": 3})(stage_task)
        self.window, self.in_flight, self.last = max(2, 2 * cpus()), 0, 0

    def free(self) -> bool:
        return self.in_flight < self.window

    def submit(self, fn: Callable, item: Any):
        self.in_flight += 1
        return self.remote.remote(fn, item)

    def release(self, slot: int) -> None:
        self.in_flight -= 1

    def close(self) -> None:
        pass


class _Workers:
    """TaskWorker actors (`Resources.threads`), up to `threads` tasks in flight on each, each new task
    on the least busy one. A worker that dies is restarted and its tasks retried."""

    def __init__(self, resources: Resources, items: int):
        options = _remote_args(resources) | {
            "max_concurrency": resources.threads,
            "max_restarts": -1,
            "max_task_retries": 3,
        }
        count = max(1, min(int(cpus() / max(resources.num_cpus, 1e-9)), -(-items // resources.threads)))
        self.workers = [ray.remote(TaskWorker).options(**options).remote() for _ in range(count)]
        self.load = dict.fromkeys(range(count), 0)
        self.threads, self.last = resources.threads, 0

    def free(self) -> bool:
        return min(self.load.values()) < self.threads

    def submit(self, fn: Callable, item: Any):
        self.last = min(self.load, key=self.load.get)
        self.load[self.last] += 1
        return self.workers[self.last].run.remote(fn, item)

    def release(self, slot: int) -> None:
        self.load[slot] -= 1

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)


def root_cause(exc: BaseException) -> BaseException:
    """The exception stage code raised, under Ray's wrappers (RayTaskError, UserCodeException...)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
        inner = inner or exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


def stage_failure(stage: Stage, exc: BaseException, where: Any = "") -> Exception:
    """One line naming the stage (and the file, or the task's payload) for an error raised inside Ray:
    bad input becomes an InputError (exit 2), storage still failing after retries a StorageError, a
    stage that reported its own failure a StageError, anything else a BugError carrying Ray's text of it
    (the worker's traceback) for `_errors.log` (all three exit 1)."""
    cause = root_cause(exc)
    described = _describe(where) if where else ""
    prefix = f"{stage.name}: {described + ': ' if described else ''}"
    match = _TAG.search(str(exc)) or _TAG.search(str(cause))
    kind, line = match.groups() if match else (kind_of(cause), _first_line(cause))
    if kind == "input":
        # Bad input names its own file, row or key; a task payload's repr would only bury that line.
        return InputError(f"{stage.name}: {line}" if not isinstance(where, str) else f"{prefix}{line}")
    if kind == "storage":
        return storage.StorageError(f"{prefix}{line}")
    if isinstance(cause, StageError) and not match:
        return type(cause)(f"{prefix}{line}")
    details = str(exc) if str(cause) in str(exc) else f"{exc}\n\ncaused by (the worker's traceback):\n{cause}"
    return BugError(f"{prefix}{kind}: {line}", details)


def _describe(item: Any) -> str:
    text = item if isinstance(item, str) else repr(item)
    return text if len(text) <= 200 else text[:200] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _run_map(stage: Stage, files: list[str], out: str, config: Any, stats: StageStats) -> ErrorTally:
    storage.makedirs(out)
    if stats.input == 0:
        storage.write_parquet(storage.join(out, "part-00000.parquet"), stage.output.empty_table())
        return ErrorTally()
    fs, _ = storage.resolve(files[0])
    paths = [storage.resolve(f)[1] for f in files]
    ds = ray.data.read_parquet(paths, filesystem=fs, num_cpus=0.25)
    if len(files) < cpus():
        # A file is read by one task and the batch function is fused into it: with fewer files than
        # CPUs the rows are first split into blocks, so that every CPU maps (measured: one task at a
        # time otherwise). The split waits for the whole read; Ray Data's streaming repartition
        # (`target_num_rows_per_block`) stays fused with the read and did not spread the work.
        ds = ds.repartition(2 * cpus())
    resources = stage.resources
    if resources.actors:
        size = max(1, min(resources.actors, cpus() - 1))
        mapped = ds.map_batches(
            _ActorFn,
            fn_constructor_args=(stage, config),
            batch_format="pyarrow",
            batch_size=resources.batch_size,
            compute=ActorPoolStrategy(min_size=1, max_size=size),
            **_remote_args(resources),
        )
    else:
        mapped = ds.map_batches(
            _TaskFn(stage, config), batch_format="pyarrow", batch_size=resources.batch_size, **_remote_args(resources)
        )
    sink = StageSink(out, stage.output, failures.keep_of(config))
    try:
        mapped.write_datasink(sink)
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as exc:
        raise stage_failure(stage, exc, files[0] if len(files) == 1 else f"{len(files)} input files") from None
    stats.output = sink.counts.pop(None, 0)
    stats.dropped.update(sink.counts)
    stats.outcomes.update(sink.outcomes)
    if sink.written != stats.output:
        raise AccountingError(f"{stage.name}: {stats.output} rows kept but {sink.written} written to {out}")
    return sink.errors


# -- multi-step stages -----------------------------------------------------------------------------


def finished_steps(stage: Stage, out: str, digest: str) -> list[dict]:
    """The markers of the stage's leading steps that finished under this fingerprint, in order."""
    done = []
    for step in stage.steps:
        marker = read_marker(storage.join(out, SCRATCH, step.name))
        if not marker or marker.get("fingerprint") != digest:
            break
        done.append(marker)
    return done


def _keep_only(out: str, steps: list[str], output: bool) -> None:
    """Remove everything in `out` but the folders of `steps` and, with `output`, the stage's output:
    the rest (a step that did not finish, unless it is resumable, and the ones after it) is redone
    from nothing."""
    scratch = storage.join(out, SCRATCH)
    for entry in storage.children(out):
        if entry != scratch and not output:
            storage.delete(entry)
    for entry in storage.children(scratch):
        if storage.name(entry) not in steps:
            storage.delete(entry)


def _run_steps(
    stage: Stage,
    inputs: list[str],
    out: str,
    config: Any,
    digest: str,
    stats: StageStats,
    context: dict,
    start: float,
    force: bool,
) -> tuple[StageStats, dict[str, float]]:
    """The steps in order, from the first one without a matching marker (all of them when forced);
    returns the stats and when each step finished (earlier runs' times for the steps resumed from)."""
    done = [] if force else finished_steps(stage, out, digest)
    if len(done) < len(stage.steps):  # (all done: killed before the stage's marker, the output is whole)
        pending = stage.steps[len(done)]
        kept = [marker["step"] for marker in done] + ([pending.name] if pending.resumable else [])
        if kept:
            _keep_only(out, kept, output=pending.resumable and pending is stage.steps[-1])
        else:
            storage.delete(out)
    storage.makedirs(out)
    files: list[str] = []
    if stage.parquet_inputs:
        files = input_files(stage, inputs)
        stats.input = check_inputs(stage, files)
    ctx = StepContext(stage, config, inputs, files, out, stats, upstream_funnel(inputs), digest, context)
    finished: dict[str, float] = {}
    for step, marker in zip(stage.steps, done):
        ctx.stats = StageStats.from_dict(marker["stats"])
        ctx.summaries[step.name] = marker["summary"]
        finished[step.name] = marker["finished"]
        _progress_print(f"{stage.name}: step {step.name} complete in an earlier run, skipped")
    for step in stage.steps[len(done) :]:
        resources = step.resources(ctx) if callable(step.resources) else step.resources
        ctx.round = 0
        while True:
            desc = step.name if step.until is None else f"{step.name} round {ctx.round}"
            results = run_tasks(stage, step.run, step.tasks(ctx), resources, desc)
            if step.until is None or step.until(results):
                break
            ctx.round += 1
        ctx.stats.seconds = time.perf_counter() - start  # for a finish that publishes the stats (the shards' manifest)
        ctx.summaries[step.name] = step.finish(ctx, results) if step.finish else None
        finished[step.name] = time.time()
        storage.write_json(
            storage.join(ctx.folder(step.name), MARKER),
            {
                "stage": stage.name,
                "step": step.name,
                "fingerprint": digest,
                "stats": ctx.stats.to_dict(),
                "summary": ctx.summaries[step.name],
                "finished": finished[step.name],
            },
        )
    if not storage.list_files(out, (".parquet",)):  # nothing kept: an empty dataset, so later stages see 0 rows
        storage.write_parquet(storage.join(out, "part-00000.parquet"), stage.output.empty_table())
    return ctx.stats, finished


# -- completion markers -----------------------------------------------------------------------------


def config_fingerprint(config: Any) -> str:
    if config is None:
        data = "null"
    elif hasattr(config, "model_dump_json"):
        data = config.model_dump_json()
    else:
        data = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def input_fingerprint(inputs: list[str]) -> list:
    """What a stage's result depends on: an upstream stage's marker, else each file's name, size, mtime."""
    parts = []
    for location in inputs:
        marker = storage.join(location, MARKER)
        if storage.is_dir(location) and storage.exists(marker):
            parts.append([location, storage.read_json(marker)["fingerprint"]])
            continue
        files = [location] if storage.is_file(location) else storage.list_files(location)
        for f in files:
            info = storage.info(f)
            parts.append([f, info.size, info.mtime_ns])
    return parts


@cache
def _source_digest(module_name: str) -> str:
    """Digest of the Python sources of the package defining a stage and of this core, so that an
    upgraded webtext redoes the stages whose code changed instead of trusting their old markers."""
    folders = {Path(sys.modules[module_name].__file__).parent, Path(__file__).parent}
    digest = hashlib.sha256()
    for path in sorted(p for folder in folders for p in folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def code_fingerprint(stage: Stage) -> str:
    if not stage.depends_on_code:
        return ""
    entry = stage.setup or (stage.steps[0].run if stage.steps else None)
    return _source_digest(entry.__module__) if entry is not None else ""


def fingerprint(stage: Stage, inputs: list[str], config: Any) -> str:
    reads = input_fingerprint(stage.reads(config)) if stage.reads else []
    payload = json.dumps(
        [stage.name, config_fingerprint(config), code_fingerprint(stage), input_fingerprint(inputs), reads], default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def read_marker(out: str) -> dict | None:
    marker = storage.join(out, MARKER)
    try:
        return storage.read_json(marker) if storage.exists(marker) else None
    except OSError:
        return None


def upstream_funnel(inputs: list[str]) -> list[dict]:
    """The funnel recorded by the stage that produced the first input folder, if any."""
    for location in inputs:
        marker = read_marker(location) if storage.is_dir(location) else None
        if marker:
            return marker.get("funnel", [])
    return []


def run_stage(
    stage: Stage, inputs: list[str], out: str, config: Any, *, context: dict | None = None, force: bool = False
) -> StageStats:
    """Run `stage` on `inputs` into the folder `out`, unless its completion marker says it is done.

    A failure other than bad input leaves its traceback (or the error budget's report) in
    `out/_errors.log`; a bug is raised as a BugError that names that file."""
    out = storage.normalize(out)
    log_location = storage.join(out, ERRORS_LOG)
    try:
        return _run_stage(stage, inputs, out, config, context, force)
    except (InputError, ConfigError):
        raise
    except Exception as exc:
        details = getattr(exc, "details", "") or failures.format_exception(exc)
        header = f"stage: {stage.name}\ninputs: {', '.join(inputs)}\nerror: {exc}\n\n"
        with contextlib.suppress(OSError):  # the storage may be what failed
            storage.write_text(log_location, header + details)
        if isinstance(exc, BugError):
            raise BugError(f"{exc} (traceback in {log_location})", details) from None
        if isinstance(exc, (StageError, OSError)):
            raise
        raise BugError(
            f"{stage.name}: {type(exc).__name__}: {_first_line(exc)} (traceback in {log_location})", details
        ) from exc


def _run_stage(stage: Stage, inputs: list[str], out: str, config: Any, context: dict | None, force: bool) -> StageStats:
    inputs = [storage.normalize(i) for i in inputs]
    print_fn = _progress_print
    start = time.perf_counter()
    try:
        digest = fingerprint(stage, inputs, config)
    except OSError as exc:
        raise InputError(f"{stage.name}: {exc}") from exc
    marker = read_marker(out)
    if marker and marker.get("fingerprint") == digest and not force:
        stats = StageStats.from_dict(marker["funnel"][-1])
        storage.delete(storage.join(out, SCRATCH))  # left by a run stopped between its marker and the clean-up
        print_fn(f"{stage.name}: complete in {out} (inputs and config unchanged), skipped")
        return stats
    stats = StageStats(stage.name, stage.unit)
    steps: dict[str, float] = {}
    errors = ErrorTally()
    storage.delete(storage.join(out, ERRORS_LOG))
    storage.delete(storage.join(out, DROPPED))
    if stage.steps:
        stats, steps = _run_steps(stage, inputs, out, config, digest, stats, context or {}, start, force)
    else:
        storage.delete(out)  # a stale or partial result is never mixed with a new one
        storage.makedirs(out)
        files = input_files(stage, inputs)
        stats.input = check_inputs(stage, files)
        errors = _run_map(stage, files, out, config, stats)
    stats.seconds = time.perf_counter() - start
    # A worker killed mid-write leaves its part's temporary file (its retry wrote the part itself);
    # plain Parquet readers of the folder would choke on it.
    storage.delete_temporaries(out)
    if stats.input != stats.output + sum(stats.dropped.values()):
        raise AccountingError(
            f"{stage.name}: {stats.input} {stage.unit} in != {stats.output} out + {sum(stats.dropped.values())} dropped"
        )
    scratch = storage.join(out, SCRATCH)
    samples = [storage.join(scratch, DROPPED)] + [storage.join(step, DROPPED) for step in storage.children(scratch)]
    stats.samples = sorted(failures.merge_samples(samples, out, failures.keep_of(config)))
    storage.write_json(storage.join(out, STATS), stats.to_dict())
    failures.check_budget(
        stage.name,
        stage.unit,
        stats,
        stage.budgeted_reasons,
        failures.setting(config, "max_error_fraction", failures.MAX_ERROR_FRACTION),
        errors,
        storage.join(out, ERRORS_LOG),
    )
    funnel = upstream_funnel(inputs) + [stats.to_dict()]
    marker = {"stage": stage.name, "fingerprint": digest, "funnel": funnel}
    if steps:
        marker["steps"] = steps  # when each step finished: a step resumed from keeps an earlier run's time
    storage.write_json(storage.join(out, MARKER), marker)
    # after the marker: a stage stopped before it still has its steps' markers to resume from
    storage.delete(storage.join(out, SCRATCH))
    return stats


# -- progress ---------------------------------------------------------------------------------------


def _progress_print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A progress line on a terminal (at least every 10 s), silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int, every: float = 10.0):
        self.label, self.total, self.every = label, total, every
        self.done = 0
        self.extra: dict[str, int] = {}
        self.start = self.last = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def advance(self, n: int, **counts: int) -> None:
        self.done += n
        for k, v in counts.items():
            self.extra[k] = self.extra.get(k, 0) + v

    def line(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.start)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        extra = " ".join(f"{k} {v}" for k, v in sorted(self.extra.items(), key=lambda kv: -kv[1]))
        return f"{self.label}: {self.done}/{self.total} ({rate:.1f}/s, ETA {eta:.0f}s) {extra}".rstrip()

    def maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last >= self.every):
            self.last = now
            _progress_print(self.line())

    def close(self) -> None:
        self.maybe_print(force=True)
