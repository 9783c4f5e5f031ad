"""`webtext inspect`: what a shards folder holds, at a glance; one document with its provenance.

Each view reads only the columns it needs, one row group at a time: the summary reads the small
columns (`n_words`, `n_tokens`, `domain`, `subreddits`, `created_utc`), never `text`; `--id` reads
only the files of the id's hash bucket and the row groups whose id range can hold it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.core import failures, storage
from webtext.core.manifest import check_manifest
from webtext.core.stage import InputError
from webtext.core.stats import StageStats, format_funnel
from webtext.shards import summary
from webtext.shards.write import buckets_of

SUMMARY_COLUMNS = ["n_words", "n_tokens", "domain", "subreddits", "created_utc"]


def _files(shards_dir: str) -> tuple[dict, list[tuple[str, dict]]]:
    manifest = check_manifest(shards_dir)
    return manifest, [(storage.join(shards_dir, *e["file"].split("/")), e) for e in manifest["shards"]]


def scan(files: list[str], columns: list[str]) -> dict:
    """The exact summary of every document (counts of all domains, not a top), row group by row group.

    `text` is read only for row groups whose `n_words` has gaps (to count their words)."""
    counters = {key: Counter() for key in ("domains", "subreddits", "months")}
    parts = []
    for location in files:
        with storage.open_input(location) as f:
            parquet = pq.ParquetFile(f)
            wanted = [c for c in columns if c in parquet.schema_arrow.names]
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=wanted)
                if "n_words" in wanted and table.column("n_words").null_count and "text" in parquet.schema_arrow.names:
                    table = table.append_column("text", parquet.read_row_group(group, columns=["text"]).column("text"))
                part = summary.summarize(table, top=None)
                for key, counter in counters.items():
                    counter.update(part.pop(key, {}))
                parts.append(part)
                parts = [summary.merge(parts)]  # constant memory
    out = summary.merge(parts)
    for key, counter in counters.items():
        out[key] = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def inspect_shards(
    shards_dir: str, samples: int = 2, top: int = 10, plot: str | None = None, echo: Callable = print
) -> dict:
    shards_dir = storage.normalize(shards_dir)
    manifest, entries = _files(shards_dir)
    files = [location for location, _ in entries]
    totals = scan(files, SUMMARY_COLUMNS)
    total_bytes = sum(storage.size(f) for f in files)
    tokens = totals.get("tokens")
    echo(
        f"{shards_dir}: {totals['documents']:,} documents, "
        f"{f'{tokens:,}' if tokens is not None else 'n/a'} GPT-2 tokens, {totals.get('words', 0):,} words, "
        f"{total_bytes:,} bytes in {len(files)} shard(s); schema version {manifest.get('schema_version')}"
    )
    if files:
        echo("\nschema:")
        with storage.open_input(files[0]) as f:
            echo(pq.read_schema(f).to_string(show_schema_metadata=False))
    funnel = [StageStats.from_dict(s) for s in manifest.get("funnel", [])]
    if funnel:
        echo("\nfunnel:")
        echo(format_funnel(funnel))
    histogram = totals.get("words_histogram")
    if histogram and sum(histogram):
        q = summary.quantiles(histogram)
        echo(
            f"\nwords per document (histogram bin upper edges) min <= {q[0]:,}, q1 <= {q[1]:,}, median <= {q[2]:,}, "
            f"q3 <= {q[3]:,}, max <= {q[4]:,}"
        )
        edges = summary.WORD_EDGES
        for i, n in enumerate(histogram):
            if n:
                label = f"{edges[i]:>6,}-{edges[i + 1] - 1:<7,}" if i + 2 < len(edges) else f">= {edges[i]:,}"
                echo(f"  {label}  {n:>9,}  {'#' * max(1, round(40 * n / max(histogram)))}")
    for key in ("domains", "subreddits"):
        if totals.get(key):
            echo(f"\ntop {key}:")
            for name, n in list(totals[key].items())[:top]:
                echo(f"  {n:>9,}  {name}")
    if totals.get("months"):
        echo(f"\nReddit submissions: {min(totals['months'])} to {max(totals['months'])}")
    for row in _samples(files, samples):
        echo(f"\n--- {row['id']}  {row['url']}\n{row.get('title') or ''}\n{row['text'][:500]}")
    if plot:
        from webtext.shards.plots import write_plots

        for path in write_plots(plot, manifest, totals, top=max(top, 20)):
            echo(f"wrote {path}")
    return totals


def _samples(files: list[str], n: int) -> list[dict]:
    rows: list[dict] = []
    for location in files:
        if len(rows) >= n:
            break
        with storage.open_input(location) as f:
            parquet = pq.ParquetFile(f)
            for group in range(parquet.num_row_groups):
                if len(rows) >= n:
                    break
                table = parquet.read_row_group(group, columns=["id", "url", "title", "text"])
                rows += table.slice(0, n - len(rows)).to_pylist()
    return rows


def find(shards_dir: str, *, id: str | None = None, url: str | None = None) -> list[dict]:
    """Documents by id (reads one bucket's files, pruned by row-group id ranges) or by url / final_url."""
    shards_dir = storage.normalize(shards_dir)
    manifest, entries = _files(shards_dir)
    if id is not None:
        if manifest.get("buckets"):
            bucket = int(buckets_of(pa.array([id]), manifest["buckets"])[0])
            entries = [(loc, e) for loc, e in entries if e.get("bucket") == bucket]
        expression = pc.field("id") == id
    else:
        expression = (pc.field("url") == url) | (pc.field("final_url") == url)
    found = []
    for location, _ in entries:
        with storage.open_input(location) as f:
            parquet = pq.ParquetFile(f)
            for group in _candidate_groups(parquet, id):
                keys = parquet.read_row_group(group, columns=["id", "url", "final_url"])
                mask = keys.filter(expression)
                if mask.num_rows:
                    table = parquet.read_row_group(group)
                    found += table.filter(expression).to_pylist()
    return found


def _candidate_groups(parquet: pq.ParquetFile, id: str | None) -> list[int]:
    """Row groups whose id statistics can hold `id` (all of them for a url lookup)."""
    groups = []
    column = parquet.schema_arrow.get_field_index("id")
    for group in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(group).column(column).statistics if id is not None else None
        if stats is not None and stats.has_min_max and not (stats.min <= id <= stats.max):
            continue
        groups.append(group)
    return groups


def show_document(row: dict, echo: Callable = print) -> None:
    """One document: provenance fields first, then the text."""
    for key, value in row.items():
        if key != "text":
            echo(f"{key:>20}: {value}")
    echo("")
    echo(row["text"])


def show_dropped(stage_dir: str, reason: str | None, n: int = 5, echo: Callable = print) -> None:
    """The examples a stage kept of its dropped rows: the reasons with examples, or `n` rows of one."""
    stage_dir = storage.normalize(stage_dir)
    reasons = failures.dropped_reasons(stage_dir)
    if not reason or reason not in reasons:
        if reason:
            raise InputError(f"{stage_dir}: no examples of {reason!r}; examples of: {', '.join(reasons) or 'none'}")
        for name in reasons:
            echo(f"{name}: {failures.read_dropped(stage_dir, name).num_rows} example(s)")
        return
    table = failures.read_dropped(stage_dir, reason)
    echo(f"{stage_dir}: {table.num_rows} example(s) of {reason}, showing {min(n, table.num_rows)}")
    for row in table.slice(0, n).to_pylist():
        echo("")
        for key in ("id", "url", "drop_reason"):
            if row[key] is not None:
                echo(f"{key}: {row[key]}")
        if row["error"]:
            echo("error:\n" + row["error"].rstrip())
        if row["text"]:
            echo("text:\n" + row["text"])
        elif row["html"]:
            echo(f"html (first {failures.HTML_BYTES} bytes):\n" + row["html"].decode("utf-8", "replace"))
