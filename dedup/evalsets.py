"""Eval-set readers: the texts whose n-grams the corpus must not contain.

An entry is a location (local or URI) read through `webtext.core.storage`, optionally followed by
`:column` for one column of a Parquet or JSONL file. Formats, from the file name:
- WikiText `.tokens`: one paragraph per line; its tokenization (` @-@ `, ` @,@ `, ` @.@ `, spaces
  before punctuation) undone; `<unk>` splits a line (an n-gram across it never existed).
- PTB (`ptb.*`): one sentence per line, spacing undone and `<unk>` splitting as above.
- `.jsonl`: the `text` field of each object (LAMBADA), or the given field.
- `.parquet`: the given column (`text` by default).
- anything else: plain text, one passage per non-empty line.
"""

from __future__ import annotations

import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq

from webtext.core import storage
from webtext.core.stage import InputError

_WIKITEXT_ESCAPES = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")]
_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}]|'s\b|'re\b|'ve\b|'ll\b|'d\b|'m\b|n't\b)")
_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_UNK = re.compile(r"\s*<unk>\s*")


def split_location(entry: str) -> tuple[str, str | None]:
    """`file.parquet:column` -> (file, column); `s3://b/x.parquet` has no column."""
    entry = str(entry)
    base, sep, column = entry.rpartition(":")
    if sep and column and "/" not in column and base.lower().endswith((".parquet", ".jsonl", ".json")):
        return base, column
    return entry, None


def evalset_files(config) -> list[str]:
    """The files `config.evalsets` reads: what a decontaminate or overlap result depends on beside its inputs."""
    return [split_location(entry)[0] for entry in config.evalsets]


def name_of(entry: str) -> str:
    """`wikitext-2.test` for .../wikitext-2.test.tokens: the file name less its last suffix."""
    location, column = split_location(entry)
    base = storage.name(location).rsplit(".", 1)[0]
    return f"{base}.{column}" if column else base


def detokenize_wikitext(line: str) -> str:
    """`guest @-@ starring role , 1 @,@ 000 was n't` -> `guest-starring role, 1,000 wasn't`."""
    for escaped, plain in _WIKITEXT_ESCAPES:
        line = line.replace(escaped, plain)
    line = _SPACE_BEFORE.sub(r"\1", line)
    return _SPACE_AFTER.sub(r"\1", line).strip()


def _split_unk(lines: list[str]) -> list[str]:
    return [part for line in lines for part in _UNK.split(line) if part.strip()]


def read_evalset(entry) -> list[str]:
    """The passages of one eval set (see the module docstring for formats)."""
    location, column = split_location(str(entry))
    lower = storage.name(location).lower()
    try:
        if lower.endswith(".parquet"):
            with storage.open_input(location) as f:
                table = pq.read_table(f, columns=[column or "text"])
            return [t for t in table.column(0).to_pylist() if isinstance(t, str) and t.strip()]
        text = storage.read_bytes(location).decode("utf-8")
    except (OSError, KeyError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
        detail = str(exc).removeprefix(f"{location}: ")  # the storage layer's message names the file too
        raise InputError(f"{location}: cannot read eval set: {detail}") from exc
    if lower.endswith((".jsonl", ".json")):
        field = column or "text"
        texts = []
        for lineno, line in enumerate(io.StringIO(text), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{location}:{lineno}: not JSON: {exc}") from exc
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise InputError(f"{location}:{lineno}: expected an object with a string {field!r}")
            texts.append(record[field])
        return texts
    lines = [line for line in text.splitlines() if line.strip()]
    if lower.endswith(".tokens"):
        return _split_unk([detokenize_wikitext(line) for line in lines])
    if lower.startswith("ptb."):
        return _split_unk([detokenize_wikitext(line) for line in lines])
    return [line.strip() for line in lines]
