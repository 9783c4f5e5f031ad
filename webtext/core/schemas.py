"""Arrow schemas of the tables passed between stages.

Each stage adds columns to what it received, so Reddit provenance travels from harvest to the shards.
Contracts other tools rely on: a pages table has at least `url` (string) and `html` (binary);
a documents table has at least `id`, `url`, `text`.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"  # 2: documents carry n_tokens (GPT-2 BPE tokens)

PROVENANCE_FIELDS = [
    pa.field("url", pa.string(), nullable=False),
    pa.field("domain", pa.string()),
    pa.field("reddit_ids", pa.list_(pa.string())),
    pa.field("subreddits", pa.list_(pa.string())),
    pa.field("scores", pa.list_(pa.int64())),
    pa.field("titles", pa.list_(pa.string())),
    pa.field("created_utc", pa.int64()),  # first submission, seconds since epoch
    pa.field("karma", pa.int64()),  # the score the karma rule compared with the threshold
]

URLS = pa.schema(PROVENANCE_FIELDS)

FETCH_FIELDS = [
    pa.field("status", pa.string(), nullable=False),  # ok, http_error, timeout, robots_denied, ...
    pa.field("http_status", pa.int32()),
    pa.field("final_url", pa.string()),
    pa.field("content_type", pa.string()),
    pa.field("html", pa.binary()),  # body bytes as fetched
    pa.field("error", pa.string()),
    pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),  # Parquet has no seconds unit
]

PAGES = pa.schema(PROVENANCE_FIELDS + FETCH_FIELDS)

DOC_FIELDS = [
    pa.field("id", pa.string(), nullable=False),  # derived from the normalized URL
    pa.field("text", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("language", pa.string()),
    pa.field("language_score", pa.float32()),
    pa.field("n_words", pa.int32()),
    pa.field("n_chars", pa.int32()),
    pa.field("n_tokens", pa.int32()),  # GPT-2 BPE tokens (webtext.core.tokenizer), the training-budget unit
    pa.field("final_url", pa.string()),
    pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),  # Parquet has no seconds unit
]

DOCS = pa.schema(DOC_FIELDS[:1] + PROVENANCE_FIELDS + DOC_FIELDS[1:])

DEDUP_FIELDS = [pa.field("duplicate_cluster", pa.string())]  # id of the surviving document
CONTAMINATION_FIELDS = [pa.field("eval_ngram_matches", pa.int32())]

SHARD = pa.schema(list(DOCS) + DEDUP_FIELDS + CONTAMINATION_FIELDS)

# The eval-set overlap report (the GPT-2 paper's Table 6): decontaminate leaves it beside its documents
# (underscored, so Parquet readers of the folder skip it), `webtext overlap` in the folder it scanned;
# the shards stage copies it into the dataset card.
OVERLAP_REPORT = "_overlap.json"
OVERLAP_TABLE = "overlap.json"


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast `table`'s columns to `schema`, filling absent optional columns with nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(len(table), field.type))
        else:
            raise ValueError(f"table lacks required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=schema)
