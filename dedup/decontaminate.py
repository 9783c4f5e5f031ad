"""The decontaminate stage: drop (or flag) documents that share n-grams with an eval set.

One pass over the documents (`dedup.overlap.scan_chunk`, a task per chunk of row groups): each
document's normalized n-grams are looked up (Bloom filter, then exact confirmation) among the
eval sets' n-grams; `eval_ngram_matches` counts them; a document with `min_matches` or more is
dropped as `contaminated` (or kept with `action: flag`). The same pass measures the paper's
overlap figure — the share of each eval set's n-grams found in the stage's input — written to
`_overlap.json` in the output folder (underscored like `_stats.json`, so Parquet readers of the
folder skip it; the shards stage can put it in the dataset card), and the
number of documents contaminated by each set (`contaminated_by:<set>` outcomes). The eval n-grams
are built first, a step of their own (`evalsets`), so that a run killed in the scan keeps them.
"""

from __future__ import annotations

import pyarrow as pa

from dedup import chunks as chunking
from dedup.evalsets import evalset_files
from dedup.overlap import (
    EVALSETS,
    EvalNgrams,
    Scan,
    ScanTask,
    evalsets_file,
    format_table,
    found_ngrams,
    scan_chunk,
    summarize,
)
from webtext.core import storage
from webtext.core.config import DecontaminateConfig
from webtext.core.schemas import CONTAMINATION_FIELDS, DEDUP_FIELDS, DOCS, OVERLAP_REPORT
from webtext.core.stage import Stage, Step, StepContext

OUTPUT = pa.schema(
    [f if f.name in ("id", "text") else f.with_nullable(True) for f in DOCS] + DEDUP_FIELDS + CONTAMINATION_FIELDS
)


def _scan_tasks(ctx: StepContext) -> list[ScanTask]:
    config: DecontaminateConfig = ctx.config
    scan = Scan(
        evalsets_file(ctx),
        config.ngram,
        config.min_matches,
        out=ctx.out,
        drop=config.action == "drop",
        stage=DECONTAMINATE,
        output=OUTPUT,
        drops=ctx.drops("scan"),
    )
    return [ScanTask(scan, chunk) for chunk in chunking.chunks(ctx.files)]


def _scanned(ctx: StepContext, results: list[dict]) -> None:
    """The counts, and the overlap report (`_overlap.json`, printed as a table)."""
    config: DecontaminateConfig = ctx.config
    evals = EvalNgrams.load(evalsets_file(ctx))
    for r in results:
        ctx.stats.output += r["kept"]
        ctx.stats.dropped.update(r["dropped"])
        ctx.stats.outcomes.update(r["outcomes"])
    for name in evals.names:
        ctx.stats.outcomes.setdefault(f"contaminated_by:{name}", 0)
    report = summarize(evals, found_ngrams(evals, results), "the decontaminate stage's input", ctx.stats.input)
    report["ngram"] = config.ngram
    storage.write_json(storage.join(ctx.out, OVERLAP_REPORT), report)
    if evals.names:
        print(format_table(report, config.ngram), flush=True)


DECONTAMINATE = Stage(
    name="decontaminate",
    unit="documents",
    required={"id": pa.string(), "text": pa.string()},
    output=OUTPUT,
    steps=(
        EVALSETS,
        Step("scan", scan_chunk, _scan_tasks, _scanned),
    ),
    non_null=("id", "text"),
    reads=evalset_files,
    description="drop (or flag) documents sharing min_matches n-grams with an eval set",
)
