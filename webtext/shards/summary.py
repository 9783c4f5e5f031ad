"""Mergeable summaries of documents: what the manifest, the dataset card and `webtext inspect` report.

A summary is computed per table (one shard, one batch) and merged by addition, so no step ever holds
more than one shard. Counts of domains and subreddits keep each part's `TOP` most frequent values:
merged, they are exact for any value that is in the top of every part (shards are id-hashed, so a
frequent domain is spread evenly) and a lower bound otherwise.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOP = 200
# Words per document: power-of-two bins, so one chart covers tweets-length pages to books.
WORD_EDGES = [0] + [2**k for k in range(4, 18)] + [2**62]

COLUMNS = ["text", "n_words", "n_tokens", "domain", "subreddits", "created_utc", "eval_ngram_matches"]


def _array(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _top(values: pa.Array, top: int | None = TOP) -> dict[str, int]:
    values = values.drop_null()
    if not len(values):
        return {}
    counts = pc.value_counts(values)
    pairs = sorted(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()), key=lambda kv: (-kv[1], kv[0])
    )
    return dict(pairs if top is None else pairs[:top])


def words_of(table: pa.Table) -> pa.Array:
    """`n_words`, counted from the text where it is missing."""
    given = table.column("n_words").cast(pa.int64()) if "n_words" in table.column_names else None
    if given is not None and (given.null_count == 0 or "text" not in table.column_names):
        return _array(given.fill_null(0))
    counted = pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))).cast(pa.int64())
    return _array(counted if given is None else pc.coalesce(given, counted))


def summarize(table: pa.Table, top: int | None = TOP) -> dict:
    """The summary of one table of documents (any subset of COLUMNS); `top=None` keeps every count."""
    names = table.column_names
    out: dict = {"documents": table.num_rows}
    if "text" in names or "n_words" in names:
        words = words_of(table)
        out["words"] = int(pc.sum(words).as_py() or 0)
        hist, _ = np.histogram(words.to_numpy(zero_copy_only=False), bins=WORD_EDGES)
        out["words_histogram"] = [int(n) for n in hist]
    if "text" in names:
        out["chars"] = int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)
        out["text_bytes"] = int(pc.sum(pc.binary_length(table.column("text"))).as_py() or 0)
    if "n_tokens" in names:
        tokens = table.column("n_tokens")
        # a count only when every document has one: a partial sum would be a wrong number
        out["tokens"] = int(pc.sum(tokens).as_py() or 0) if tokens.null_count == 0 else None
    else:
        out["tokens"] = None
    if "eval_ngram_matches" in names:  # decontaminate with `action: flag` keeps them
        out["with_eval_ngrams"] = int(pc.sum(pc.greater(table.column("eval_ngram_matches"), 0)).as_py() or 0)
    if "domain" in names:
        out["domains"] = _top(_array(table.column("domain")), top)
    if "subreddits" in names:
        # a document counts once per subreddit it was posted to
        out["subreddits"] = _top(_array(pc.list_flatten(table.column("subreddits"))), top)
    if "created_utc" in names:
        created = _array(table.column("created_utc")).drop_null()
        months = (
            pc.strftime(created.cast(pa.timestamp("s", tz="UTC")), format="%Y-%m")
            if len(created)
            else pa.array([], pa.string())
        )
        out["months"] = _top(months, None)
    return out


def merge(parts: list[dict]) -> dict:
    """The summary of the union of the parts' documents."""
    out: dict = {"documents": 0}
    for part in parts:
        for key, value in part.items():
            if key in ("domains", "subreddits", "months"):
                out[key] = dict(Counter(out.get(key, {})) + Counter(value))
            elif key == "words_histogram":
                previous = out.get(key, [0] * len(value))
                out[key] = [a + b for a, b in zip(previous, value)]
            elif key == "tokens":
                out[key] = None if (value is None or out.get(key, 0) is None) else out.get(key, 0) + value
            else:
                out[key] = out.get(key, 0) + value
    for key in ("domains", "subreddits"):
        if key in out:
            out[key] = dict(sorted(out[key].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP])
    if "months" in out:
        out["months"] = dict(sorted(out["months"].items()))
    return out


def quantiles(histogram: list[int], qs=(0.0, 0.25, 0.5, 0.75, 1.0)) -> list[int]:
    """Approximate quantiles (the upper edge of the bin holding each) from a words histogram."""
    total = sum(histogram)
    if not total:
        return [0 for _ in qs]
    cumulative = np.cumsum(histogram)
    edges = WORD_EDGES[1:-1] + [WORD_EDGES[-2] * 2]
    return [int(edges[int(np.searchsorted(cumulative, max(1, q * total)))]) for q in qs]
