"""The decontaminate stage: drop (or flag) documents that share n-grams with an eval set.

One pass over the documents (`dedup.overlap.scan_chunk`, a task per chunk of row groups): each
document's normalized n-grams are looked up (Bloom filter, then exact confirmation) among the
eval sets' n-grams; `eval_ngram_matches` counts them; a document with `min_matches` or more is
dropped as `contaminated` (or kept with `action: flag`). The same pass measures the paper's
overlap figure — the share of each eval set's n-grams found in the stage's input — written to
`_overlap.json` in the output folder (underscored like `_stats.json`, so Parquet readers of the
folder skip it; the shards stage can put it in the dataset card), and the
number of documents contaminated by each set (`contaminated_by:<set>` outcomes).
"""

from __future__ import annotations

import pyarrow as pa

from dedup.overlap import EvalNgrams, Scan, format_table, run_scan, summarize
from webtext.core import storage
from webtext.core.config import DecontaminateConfig
from webtext.core.schemas import CONTAMINATION_FIELDS, DEDUP_FIELDS, DOCS
from webtext.core.stage import Stage
from webtext.core.stats import StageStats

OVERLAP_FILE = "_overlap.json"

OUTPUT = pa.schema(
    [f if f.name in ("id", "text") else f.with_nullable(True) for f in DOCS] + DEDUP_FIELDS + CONTAMINATION_FIELDS
)


def decontaminate_plan(run) -> StageStats:
    config: DecontaminateConfig = run.config
    evals = EvalNgrams.build(config.evalsets, config.ngram, config.false_positive_rate)
    location = storage.join(run.scratch, "evalsets.npz")
    evals.save(location)
    scan = Scan(location, config.ngram, config.min_matches, out=run.out, drop=config.action == "drop",
                stage=DECONTAMINATE, output=OUTPUT)
    results, found = run_scan(run, scan, evals, run.inputs, DECONTAMINATE)
    for r in results:
        run.stats.input += r["rows"]
        run.stats.output += r["kept"]
        run.stats.dropped.update(r["dropped"])
        run.stats.outcomes.update(r["outcomes"])
    if not results:
        storage.write_parquet(storage.join(run.out, "part-00000.parquet"), OUTPUT.empty_table())
    for name in evals.names:
        run.stats.outcomes.setdefault(f"contaminated_by:{name}", 0)
    report = summarize(evals, found, "the decontaminate stage's input", run.stats.input)
    report["ngram"] = config.ngram
    storage.write_json(storage.join(run.out, OVERLAP_FILE), report)
    if evals.names:
        print(format_table(report, config.ngram), flush=True)
    return run.stats


DECONTAMINATE = Stage(
    name="decontaminate",
    unit="documents",
    required={"id": pa.string(), "text": pa.string()},
    output=OUTPUT,
    plan=decontaminate_plan,
    non_null=("id", "text"),
    description="drop (or flag) documents sharing min_matches n-grams with an eval set",
)
