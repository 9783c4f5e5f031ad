"""Test-set decontamination with Bloom filters of normalized n-grams (GPT-2 paper, §4).

Normalization as in the paper: lower-cased alphanumeric words separated by single spaces, so
WikiText's ` @-@ ` escapes and punctuation vanish on both sides. One filter per eval set, so the
counts say which set a document overlaps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import xxhash
from rbloom import Bloom

from webtext.config import DecontaminateConfig

_ALNUM = re.compile(r"[a-z0-9]+")


def alnum_words(text: str) -> list[str]:
    return _ALNUM.findall(text.lower())


def ngrams(text: str, n: int) -> list[str]:
    words = alnum_words(text)
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def ngram_hash(ngram: str) -> int:
    """128-bit xxh3 as a signed int: stable across processes (unlike `hash`), as rbloom needs."""
    return xxhash.xxh3_128_intdigest(ngram.encode()) - (1 << 127)


def read_evalset(path: Path) -> list[str]:
    """Texts of an eval set: a `.jsonl` file's "text" fields (LAMBADA), else the file's lines."""
    path = Path(path)
    try:
        if path.suffix == ".jsonl":
            texts = []
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                        raise ValueError(f"{path}:{lineno}: expected an object with a string 'text'")
                    texts.append(record["text"])
            return texts
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read eval set: {exc}") from exc


def build_filter(texts: list[str], config: DecontaminateConfig) -> Bloom:
    """A Bloom filter of every n-gram of `texts`, sized for the configured false-positive rate."""
    grams = [g for text in texts for g in ngrams(text, config.ngram)]
    bloom = Bloom(max(len(grams), 1), config.false_positive_rate, ngram_hash)
    bloom.update(grams)
    return bloom


def evalset_name(path: Path) -> str:
    """`wikitext-2.test` for wikitext-2.test.tokens: the file name less its last suffix."""
    return Path(path).name.rsplit(".", 1)[0]


class ContaminationCounter:
    """Adds `eval_ngram_matches` (all sets) and one `matches_<set>` count per eval set to a batch."""

    def __init__(self, filters: dict[str, bytes], config: DecontaminateConfig):
        self.config = config
        self.filters = {name: Bloom.load_bytes(data, ngram_hash) for name, data in filters.items()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        grams = [ngrams(text, self.config.ngram) for text in batch.column("text").to_pylist()]
        total = [0] * batch.num_rows
        for name, bloom in self.filters.items():
            counts = [sum(g in bloom for g in doc) for doc in grams]
            total = [t + c for t, c in zip(total, counts)]
            batch = batch.append_column(f"matches_{name}", pa.array(counts, pa.int32()))
        return batch.append_column("eval_ngram_matches", pa.array(total, pa.int32()))
