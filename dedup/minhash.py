"""Exact and near-duplicate detection: text hashes and MinHash signatures per document, LSH over them.

Hashes and signatures are computed per batch on Ray workers; the clustering step sees only ids,
hashes and signatures, never texts.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import xxhash
from datasketch import MinHash, MinHashLSH

from webtext.config import DedupConfig

_WORD = re.compile(r"\w+")
SCHEME = "affine32"  # datasketch 2.0's default: 32-bit signatures, stored as uint32


def normalized_words(text: str) -> list[str]:
    """Lower-cased word tokens: copies that differ only in case, spacing or punctuation hash alike."""
    return _WORD.findall(text.lower())


def text_hash(text: str) -> str:
    """Exact-duplicate key of a document."""
    return xxhash.xxh3_128_hexdigest(" ".join(normalized_words(text)).encode())


def shingles(words: list[str], n: int) -> list[bytes]:
    """Word n-grams; a document shorter than n words is one shingle."""
    if len(words) <= n:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def minhash(text: str, config: DedupConfig) -> MinHash:
    sketch = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
    sketch.update_batch(shingles(normalized_words(text), config.shingle_words))
    return sketch


class Signer:
    """Adds `text_hash` and `signature` columns to a documents batch (a Ray Data `map_batches` fn)."""

    def __init__(self, config: DedupConfig):
        self.config = config

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        hashes = pa.array([text_hash(t) for t in texts], pa.string())
        signatures = pa.array(
            [minhash(t, self.config).hashvalues for t in texts],
            pa.list_(pa.uint32()),
        )
        return batch.append_column("text_hash", hashes).append_column("signature", signatures)


def survivor_order(keys: pa.Table) -> list[int]:
    """Row indices by preference: the most Reddit karma first, then the earliest post, then id."""
    karma = [-(k or 0) for k in keys.column("karma").to_pylist()]
    created = [c if c is not None else 2**62 for c in keys.column("created_utc").to_pylist()]
    ids = keys.column("id").to_pylist()
    return sorted(range(keys.num_rows), key=lambda i: (karma[i], created[i], ids[i]))


def find_duplicates(keys: pa.Table, config: DedupConfig) -> dict[str, tuple[str, str]]:
    """Map each duplicate's id to (reason, id of the document kept in its place).

    `keys` has columns id, karma, created_utc, text_hash, signature. Documents are visited in
    survivor order; the first of each exact-hash group survives it, and a document whose LSH
    candidates include an already-kept document is a near duplicate of that one.
    """
    ids = keys.column("id").to_pylist()
    hashes = keys.column("text_hash").to_pylist()
    signatures = keys.column("signature").to_pylist()
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    kept_by_hash: dict[str, str] = {}
    duplicates: dict[str, tuple[str, str]] = {}
    for i in survivor_order(keys):
        if config.exact and hashes[i] in kept_by_hash:
            duplicates[ids[i]] = ("exact_duplicate", kept_by_hash[hashes[i]])
            continue
        kept_by_hash.setdefault(hashes[i], ids[i])
        if config.near:
            sketch = MinHash(
                num_perm=config.num_perm, seed=config.seed, hashvalues=np.asarray(signatures[i]), scheme=SCHEME
            )
            candidates = lsh.query(sketch)
            if candidates:
                duplicates[ids[i]] = ("near_duplicate", min(candidates))
                continue
            lsh.insert(ids[i], sketch)
    return duplicates
