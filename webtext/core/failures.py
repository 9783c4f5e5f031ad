"""Failures that say what they are, an error budget per stage, and examples of every drop.

Three kinds of failure: bad input or config (`InputError`, `ConfigError`: exit 2, one line naming the
file, column or key), storage that stays unreachable after the storage layer's retries (`OSError`:
exit 1 naming the location), and everything else, a bug (`BugError`: exit 1, its traceback in
`OUT/<stage>/_errors.log`). Rows dropped because code raised count against the stage's
`max_error_fraction`; past it the stage fails without its completion marker.

Every stage keeps examples of its dropped rows: per reason, the `keep_dropped` rows whose key (id,
else url, else text) hashes smallest, so the same rows on a rerun and on any cluster size, in bounded
memory (each writer keeps at most `keep` rows per reason; the merge at the end reads one part at a
time). They end in `OUT/<stage>/_dropped/<reason>.parquet`; `keep_dropped: all` keeps every row.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from webtext.core import storage

DROP_REASON = "drop_reason"
OUTCOMES = "outcomes"  # optional list<string> column: labels counted per stage, not written
ERROR = "error"  # optional string column: the traceback of a row dropped because code raised


class StageError(RuntimeError):
    """A stage that failed; the message is one line naming the stage and what failed."""


class AccountingError(StageError):
    """Rows came in that neither went out nor were dropped under a reason."""


class InputError(ValueError):
    """Bad input or config, raised where it is checked: missing column, wrong type, unreadable file (exit 2).
    Any other ValueError is a bug."""


ERRORS_LOG = "_errors.log"
DROPPED = "_dropped"
MAX_ERROR_FRACTION = 0.01  # far above what the demo and WCXB dev raise (BENCHMARKS.md), far below a broken dependency
KEEP_DROPPED = 200
TEXT_CHARS, HTML_BYTES = 4096, 1024  # what a sample keeps of a dropped row's text and HTML
TOP_ERRORS = 10  # distinct error messages kept per write task and reported by the budget

SAMPLE = pa.schema(
    [
        ("key", pa.uint64()),
        ("id", pa.string()),
        ("url", pa.string()),
        (DROP_REASON, pa.string()),
        (ERROR, pa.string()),
        ("text", pa.string()),
        ("html", pa.binary()),
    ]
)


class BugError(StageError):
    """Code that raised where it should not; `details` holds the traceback for `_errors.log`."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class ErrorBudgetExceeded(StageError):
    """More rows dropped because code raised than the stage's `max_error_fraction` allows."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def setting(config: Any, name: str, default: Any) -> Any:
    """A reliability setting of a stage's config section (test stages may pass dicts or None)."""
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def keep_of(config: Any) -> int | None:
    """Rows kept per drop reason: `None` keeps all of them."""
    keep = setting(config, "keep_dropped", KEEP_DROPPED)
    return None if keep == "all" else int(keep)


def message_of(error: str) -> str:
    """The last line of a traceback: `ZeroDivisionError: division by zero`."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# -- samples of dropped rows -----------------------------------------------------------------------


def _safe(reason: str) -> str:
    return re.sub(r"[^\w.-]", "_", reason)


def as_sample(table: pa.Table) -> pa.Table:
    """The columns a person needs to judge a drop, in one schema for every stage; text and HTML cut."""
    n = table.num_rows

    def column(name: str, type_: pa.DataType) -> pa.Array:
        if name not in table.column_names:
            return pa.nulls(n, type_)
        values = table.column(name).combine_chunks()
        if name == "html":
            values = pc.binary_slice(values.cast(pa.binary()), 0, HTML_BYTES)
        elif name == "text":
            values = pc.utf8_slice_codeunits(values.cast(pa.string()), 0, TEXT_CHARS)
        return values.cast(type_)

    columns = {f.name: column(f.name, f.type) for f in SAMPLE if f.name != "key"}
    keys = [columns[name].to_pylist() for name in ("id", "url", "text")]
    hashed = [
        xxhash.xxh64_intdigest((next((k for k in row if k), None) or "").encode()) for row in zip(*keys, strict=True)
    ]
    return pa.Table.from_pydict({"key": pa.array(hashed, pa.uint64()), **columns}, schema=SAMPLE)


def smallest(table: pa.Table, keep: int) -> pa.Table:
    """The `keep` rows with the smallest keys (ties by id, url, text): the same rows whatever the split."""
    order = pc.sort_indices(
        table, [("key", "ascending"), ("id", "ascending"), ("url", "ascending"), ("text", "ascending")]
    )
    return table.take(order[:keep])


class DropSampler:
    """One writer's examples of its dropped rows: at most `keep` per reason in memory (all: streamed
    to disk), written under `folder/<reason>/<part>.parquet` by `close`."""

    def __init__(self, folder: str, keep: int | None, part: str):
        self.folder, self.keep, self.part = folder, keep, part
        self.samples: dict[str, pa.Table] = {}
        self.writers: dict[str, Any] = {}
        self.stack = contextlib.ExitStack()

    def add(self, dropped: pa.Table) -> None:
        """Rows with a `drop_reason`, any columns."""
        if not dropped.num_rows:
            return
        sample = as_sample(dropped)
        reasons = sample.column(DROP_REASON)
        for reason in pc.unique(reasons).to_pylist():
            rows = sample.filter(pc.equal(reasons, reason))
            if self.keep is None:
                if reason not in self.writers:
                    path = storage.join(self.folder, _safe(reason), f"{self.part}.parquet")
                    self.writers[reason] = self.stack.enter_context(storage.parquet_writer(path, SAMPLE))
                self.writers[reason].write_table(rows)
            elif self.keep:
                previous = self.samples.get(reason)
                both = rows if previous is None else pa.concat_tables([previous, rows])
                self.samples[reason] = smallest(both, self.keep)

    def close(self) -> None:
        self.stack.close()
        for reason, table in self.samples.items():
            storage.write_parquet(storage.join(self.folder, _safe(reason), f"{self.part}.parquet"), table)


@dataclass(frozen=True)
class DropSink:
    """Where a step's task hands its dropped rows (put it in the task's payload: `StepContext.drops`)."""

    folder: str
    keep: int | None

    def write(self, dropped: pa.Table, part: str) -> None:
        """`dropped`: rows with `drop_reason` (and id/url/text/html where the step has them)."""
        sampler = DropSampler(self.folder, self.keep, part)
        sampler.add(dropped)
        sampler.close()


def merge_samples(folders: list[str], out: str, keep: int | None) -> dict[str, str]:
    """Merge the writers' parts of every reason found in `folders` into `out/_dropped/<reason>.parquet`,
    one part at a time; returns {reason folder name: file}."""
    parts: dict[str, list[str]] = {}
    for folder in folders:
        for entry in storage.children(folder):
            parts.setdefault(storage.name(entry), []).extend(storage.list_files(entry, (".parquet",)))
    written = {}
    for reason, files in sorted(parts.items()):
        target = storage.join(out, DROPPED, f"{reason}.parquet")
        with storage.parquet_writer(target, SAMPLE, compression="zstd") as writer:
            if keep is None:
                for location in files:
                    with storage.open_input(location) as f:
                        for batch in pq.ParquetFile(f).iter_batches():
                            writer.write_batch(batch)
            else:
                merged = SAMPLE.empty_table()
                for location in files:
                    with storage.open_input(location) as f:
                        merged = smallest(pa.concat_tables([merged, pq.read_table(f, schema=SAMPLE)]), keep)
                writer.write_table(merged)
        written[reason] = target
    return written


def read_dropped(stage_dir: str, reason: str) -> pa.Table:
    location = storage.join(stage_dir, DROPPED, f"{_safe(reason)}.parquet")
    with storage.open_input(location) as f:
        return pq.read_table(f)


def dropped_reasons(stage_dir: str) -> list[str]:
    folder = storage.join(stage_dir, DROPPED)
    return [storage.name(f)[: -len(".parquet")] for f in storage.children(folder) if f.endswith(".parquet")]


# -- errors of rows --------------------------------------------------------------------------------


class ErrorTally:
    """The messages of rows dropped because code raised: counts, and per message the example row with
    the smallest key and its traceback. Bounded: the `TOP_ERRORS` most common messages."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: dict[str, tuple[int, str, str]] = {}  # message -> (key, row id, traceback)

    def add_rows(self, sample: pa.Table) -> None:
        """Sample-shaped rows (`as_sample`) whose `error` is set."""
        for key, id_, url, error in zip(
            *(sample.column(c).to_pylist() for c in ("key", "id", "url", ERROR)), strict=True
        ):
            self.add(message_of(error), 1, (key, id_ or url or "", error))

    def add(self, message: str, count: int, example: tuple) -> None:
        self.counts[message] += count
        example = tuple(example)
        if message not in self.examples or example[0] < self.examples[message][0]:
            self.examples[message] = example

    def top(self) -> list[tuple[str, int, tuple]]:
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERRORS]
        return [(message, n, self.examples[message]) for message, n in ranked]

    def to_list(self) -> list:
        return [[message, n, list(example)] for message, n, example in self.top()]

    def merge(self, items: list) -> None:
        for message, n, example in items:
            self.add(message, n, example)


def check_budget(
    stage_name: str, unit: str, stats, reasons: tuple[str, ...], fraction: float, tally: ErrorTally, log_location: str
) -> None:
    """Fail the stage when more rows were dropped because code raised than `fraction` of its input."""
    errors = sum(stats.dropped.get(r, 0) for r in reasons)
    if not errors or errors <= fraction * stats.input:
        return
    lines = [f"{n} x {message} (e.g. row {example[1]})" for message, n, example in tally.top()]
    summary = (
        f"{stage_name}: {errors} of {stats.input} {unit} ({errors / max(1, stats.input):.1%}) dropped because code raised "
        f"({', '.join(r for r in reasons if stats.dropped.get(r))}), over max_error_fraction {fraction:g}"
    )
    details = "\n".join(
        [summary, *lines, ""]
        + [f"--- {n} x {message}; row {example[1]}:\n{example[2]}" for message, n, example in tally.top()]
    )
    first = f": {lines[0]}" if lines else ""
    raise ErrorBudgetExceeded(f"{summary}{first} (all messages and tracebacks in {log_location})", details)
