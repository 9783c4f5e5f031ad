"""MinHash signatures of a whole batch of documents at once, identical to `datasketch.MinHash`.

A document's words are the maximal runs of ASCII letters, digits, `_` and non-ASCII characters of
its lower-cased text (Arrow's utf8_lower); its shingles are word n-grams (a document shorter than n
words is one shingle). Each shingle gets a 32-bit hash (the `hash` setting), then datasketch's
"affine32" scheme: the MurmurHash3 32-bit finalizer, `a*h + b mod 2^32` per permutation with
datasketch's own permutation parameters, and the minimum per document.

Everything is numpy over the whole batch's UTF-8 buffer: no Python object per word or shingle with
the default hash, `poly64`: each distinct word of the batch is hashed once (xxh3_64), a shingle's
hash is fmix64 of a polynomial over its n word hashes, high 32 bits. MinHash needs a well-mixed
hash, not a cryptographic one; this costs a few ns per shingle instead of ~300 ns for a Python call
per shingle (`xxh3`: xxh3_64 of the shingle's bytes; `sha1`: datasketch's default `sha1_hash32`).
`shingle_hash32` computes each hash for one shingle's bytes in plain Python, so
`datasketch.MinHash(hashfunc=shingle_hash32(config))` reproduces our signatures exactly.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterator
from functools import lru_cache, partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasketch import MinHash

from webtext.core.config import DedupConfig

SCHEME = "affine32"
MASK64 = (1 << 64) - 1
_WORD_BASE = 0x9E3779B97F4A7C15  # combines the word hashes of a shingle
_LENGTH_MIX = 0xD6E8FEB86659FD93


def byte_table(chars: bytes, non_ascii: bool) -> np.ndarray:
    """Which UTF-8 bytes belong to words: `chars`, and every byte of a non-ASCII character if asked."""
    table = np.zeros(256, bool)
    table[list(chars)] = True
    table[0x80:] = non_ascii
    return table


WORD_BYTES = byte_table(b"0123456789abcdefghijklmnopqrstuvwxyz_", non_ascii=True)
_WORD_RE = re.compile(rb"[0-9a-z_\x80-\xff]+")


def lower(texts) -> pa.StringArray:
    """Unicode lower case of a batch of texts (Arrow's utf8_lower, one C++ call)."""
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return pc.utf8_lower(array.cast(pa.large_string()))


def normalized_text(text: str) -> bytes:
    """A document as its normalized words joined by spaces (the scalar form of `tokenize`):
    lower-cased runs of ASCII letters, digits, `_` and non-ASCII characters, so copies that differ
    in case, spacing or ASCII punctuation are equal."""
    return b" ".join(_WORD_RE.findall(lower([text])[0].as_py().encode()))


def shingles(normalized: bytes, n: int) -> list[bytes]:
    """Word n-grams of a normalized text; a document shorter than n words is one shingle."""
    words = normalized.split(b" ") if normalized else []
    if len(words) <= n:
        return [normalized]
    return [b" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


# -- hash functions ---------------------------------------------------------------------------------


def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    return x ^ (x >> 33)


def fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _poly64_hash32(n: int, shingle: bytes) -> int:
    acc = 0
    for k, word in enumerate(shingle.split(b" ") if shingle else []):
        acc = (acc + xxhash.xxh3_64_intdigest(word) * pow(_WORD_BASE, n - 1 - k, 1 << 64)) & MASK64
    return _fmix64_int(acc) >> 32


def _xxh3_hash32(shingle: bytes) -> int:
    return xxhash.xxh3_64_intdigest(shingle) & 0xFFFFFFFF


def _sha1_hash32(shingle: bytes) -> int:
    """datasketch.hashfunc.sha1_hash32."""
    return struct.unpack("<I", hashlib.sha1(shingle).digest()[:4])[0]


def shingle_hash32(config: DedupConfig) -> Callable[[bytes], int]:
    """The configured shingle hash for one shingle's bytes (a datasketch `hashfunc`)."""
    if config.hash == "poly64":
        return partial(_poly64_hash32, config.shingle_words)
    return {"xxh3": _xxh3_hash32, "sha1": _sha1_hash32}[config.hash]


def tokenize(texts, table: np.ndarray = WORD_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """xxh3_64 of every word of every lower-cased text (concatenated) and each text's word count.

    Words are maximal runs of `table` bytes within a text, found with numpy over the batch's
    UTF-8 buffer; each distinct word is hashed once (Arrow's dictionary encoding).
    """
    low = lower(texts)
    n = len(low)
    offsets = np.frombuffer(low.buffers()[1], np.int64, n + 1, low.offset)
    data = np.frombuffer(low.buffers()[2], np.uint8, int(offsets[-1]))[int(offsets[0]) :]
    offsets = offsets - offsets[0]
    inside = table[data]
    first = inside.copy()
    first[1:] &= ~inside[:-1]
    last = inside.copy()
    last[:-1] &= ~inside[1:]
    doc_starts = offsets[:-1][offsets[:-1] < offsets[1:]]
    first[doc_starts] = inside[doc_starts]
    last[offsets[1:][offsets[1:] > offsets[:-1]] - 1] = inside[offsets[1:][offsets[1:] > offsets[:-1]] - 1]
    starts = np.flatnonzero(first)
    lengths = np.flatnonzero(last) + 1 - starts
    counts = (
        np.bincount(np.searchsorted(offsets, starts, side="right") - 1, minlength=n)
        if len(starts)
        else np.zeros(n, np.int64)
    )
    word_offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lengths, out=word_offsets[1:])
    words = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(starts), [None, pa.py_buffer(word_offsets), pa.py_buffer(data[inside])]
    )
    encoded = words.dictionary_encode()
    distinct = np.fromiter(
        (xxhash.xxh3_64_intdigest(w) for w in encoded.dictionary.to_pylist()), np.uint64, len(encoded.dictionary)
    )
    return distinct[encoded.indices.to_numpy()], counts


def window_hashes(words: np.ndarray, counts: np.ndarray, n: int, short_as_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """fmix64 of `sum(word[i+k] * B^(n-1-k))` over each n consecutive words within a text, and the
    text of each window. With `short_as_one`, a text of fewer than n words (even 0) is one window."""
    if short_as_one and (counts == 0).any():  # an empty text: one window of no words (sum 0)
        before = np.cumsum(counts == 0) - (counts == 0)
        doc = np.repeat(np.arange(len(counts)), counts)
        padded = np.zeros(len(words) + int((counts == 0).sum()), np.uint64)
        padded[np.arange(len(words)) + before[doc]] = words
        words, counts = padded, np.maximum(counts, 1)
    size = len(words)
    padded = np.zeros(size + n, np.uint64)
    padded[:size] = words
    acc = padded[:size] * np.uint64(pow(_WORD_BASE, n - 1, 1 << 64))
    for k in range(1, n):  # windows crossing a text's end are dropped below
        acc += padded[k : k + size] * np.uint64(pow(_WORD_BASE, n - 1 - k, 1 << 64))
    ends = np.cumsum(counts)
    starts = ends - counts
    valid = np.ones(size, bool)
    for k in range(1, n):  # the last n-1 positions of each text start no full window
        tail = ends - k
        valid[tail[tail >= starts]] = False
    doc = np.repeat(np.arange(len(counts)), counts)
    if short_as_one:  # a text of fewer than n words: one window over all of them
        short = np.flatnonzero((counts < n) & (counts > 0))
        first = starts[short]
        partial = np.zeros(len(short), np.uint64)
        for k in range(n):
            inside = k < counts[short]
            partial[inside] += words[first[inside] + k] * np.uint64(pow(_WORD_BASE, n - 1 - k, 1 << 64))
        acc[first] = partial
        valid[first] = True
    return fmix64(acc[valid]), doc[valid]


def text_hashes(words: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """64-bit exact-duplicate key per text: a polynomial over all its word hashes."""
    doc = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    position = np.arange(len(words)) - start[doc]
    powers = np.ones(int(counts.max(initial=0)) + 1, np.uint64)
    np.cumprod(np.full(len(powers) - 1, _WORD_BASE, np.uint64), out=powers[1:])
    running = np.zeros(len(words) + 1, np.uint64)
    np.cumsum(words * powers[position], out=running[1:])  # wraps mod 2^64, so differences are exact
    ends = np.cumsum(counts)
    sums = running[ends] - running[ends - counts]
    return fmix64(sums ^ (counts.astype(np.uint64) * np.uint64(_LENGTH_MIX)))


def shingle_hashes(texts, config: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint32 hashes of every shingle of every document, each document's first index, and the
    documents' exact-text keys."""
    n = config.shingle_words
    words, counts = tokenize(texts)
    keys = text_hashes(words, counts)
    if config.hash == "poly64":
        hashes, _ = window_hashes(words, counts, n, short_as_one=True)
        hashes = (hashes >> np.uint64(32)).astype(np.uint32)
        per_doc = np.maximum(counts - n + 1, 1)
    else:
        fn = shingle_hash32(config)
        texts = texts.to_pylist() if isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
        lists = [[fn(s) for s in shingles(normalized_text(t), n)] for t in texts]
        hashes = np.fromiter((h for p in lists for h in p), np.uint32)
        per_doc = np.array([len(p) for p in lists], np.int64)
    offsets = np.zeros(len(per_doc), np.int64)
    np.cumsum(per_doc[:-1], out=offsets[1:])
    return hashes, offsets, keys


# -- signatures -------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own affine32 permutation parameters (a odd), as uint32 columns."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


_DOC_SHIFT = np.uint64(32)  # a shingle set's sort key: (document << 32) | 32-bit shingle hash
_HASH_MASK = np.uint64(0xFFFFFFFF)
BLOCK_SHINGLES = 16_384  # shingles x PERM_STEP permuted values stay in the L2 cache
PERM_STEP = 16


def sign(texts, config: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(documents x num_perm) uint32 MinHash signatures, equal to datasketch's `hashvalues`, and
    the documents' 64-bit exact-text keys. `texts`: a list of str or an Arrow string array."""
    signatures, keys, _, _ = _sign(texts, config)
    return signatures, keys


def shingle_sets(hashes: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    """Each document's distinct shingle hashes, sorted (for exact Jaccard of candidate pairs)."""
    doc = np.repeat(np.arange(len(offsets), dtype=np.uint64), np.diff(np.append(offsets, len(hashes))))
    combined = np.sort((doc << _DOC_SHIFT) | hashes.astype(np.uint64))  # one sort, not a lexsort
    keep = np.ones(len(combined), bool)
    keep[1:] = combined[1:] != combined[:-1]
    combined = combined[keep]
    counts = np.bincount((combined >> _DOC_SHIFT).astype(np.int64), minlength=len(offsets))
    list_offsets = np.zeros(len(offsets) + 1, np.int32)
    np.cumsum(counts, out=list_offsets[1:])
    return pa.ListArray.from_arrays(pa.array(list_offsets), pa.array((combined & _HASH_MASK).astype(np.uint32)))


def sign_with_shingles(texts, config: DedupConfig) -> tuple[np.ndarray, np.ndarray, pa.ListArray]:
    """`sign`, plus each document's sorted distinct shingle hashes."""
    signatures, keys, hashes, offsets = _sign(texts, config)
    return signatures, keys, shingle_sets(hashes, offsets)


def _sign(texts, config: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Signatures, exact-text keys, shingle hashes and each document's first shingle."""
    if not len(texts):
        return (
            np.zeros((0, config.num_perm), np.uint32),
            np.zeros(0, np.uint64),
            np.zeros(0, np.uint32),
            np.zeros(0, np.int64),
        )
    hashes, offsets, keys = shingle_hashes(texts, config)
    return _min_hashes(hashes, offsets, config), keys, hashes, offsets


def _min_hashes(hashes: np.ndarray, offsets: np.ndarray, config: DedupConfig) -> np.ndarray:
    """(documents x num_perm) minimum over each document's shingles of each permutation of their
    mixed hashes, block by block of whole documents so that the permuted values stay in cache."""
    mixed = _fmix32(hashes)
    a, b = permutations(config.num_perm, config.seed)
    out = np.empty((config.num_perm, len(offsets)), np.uint32)
    buffer = np.empty((PERM_STEP, BLOCK_SHINGLES), np.uint32)
    for d0, d1, s0, s1 in _document_blocks(offsets, len(mixed)):
        work = buffer[:, : s1 - s0] if s1 - s0 <= BLOCK_SHINGLES else np.empty((PERM_STEP, s1 - s0), np.uint32)
        _block_minima(mixed[s0:s1], offsets[d0:d1] - s0, a, b, work, out[:, d0:d1])
    return np.ascontiguousarray(out.T)


def _document_blocks(offsets: np.ndarray, shingles: int) -> Iterator[tuple[int, int, int, int]]:
    """(first document, end document, first shingle, end shingle) of runs of whole documents of about
    BLOCK_SHINGLES shingles (one document when it alone has more)."""
    ends = np.append(offsets[1:], shingles)
    d0 = 0
    while d0 < len(offsets):
        d1 = max(d0 + 1, int(np.searchsorted(ends, offsets[d0] + BLOCK_SHINGLES, side="right")))
        yield d0, d1, offsets[d0], ends[d1 - 1]
        d0 = d1


def _block_minima(
    block: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray, work: np.ndarray, out: np.ndarray
) -> None:
    """`out[p, d]`: the least `a[p] * h + b[p]` (mod 2^32) over document d's shingle hashes h in
    `block` (documents begin at `starts`), PERM_STEP permutations at a time in `work`."""
    for lo in range(0, len(a), PERM_STEP):
        step = min(PERM_STEP, len(a) - lo)
        np.multiply(block[None, :], a[lo : lo + step], out=work[:step])
        work[:step] += b[lo : lo + step]
        out[lo : lo + step] = np.minimum.reduceat(work[:step], starts, axis=1)


def signatures(texts, config: DedupConfig) -> np.ndarray:
    return sign(texts, config)[0]


# -- LSH parameters ---------------------------------------------------------------------------------


def lsh_params(threshold: float, num_perm: int, min_recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest candidates) whose S-curve still makes a pair
    at exactly `threshold` a candidate with probability >= `min_recall`, bands = num_perm // rows.

    datasketch's `_optimal_param` balances false positives and negatives (9 x 13 at 0.8: a pair at
    Jaccard 0.8 is a candidate 40% of the time); here every candidate is verified against its
    signature agreement afterwards, so extra candidates cost only a vectorized comparison.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= min_recall:
            return bands, rows
    return num_perm, 1


def bands_rows(config: DedupConfig) -> tuple[int, int]:
    return (config.bands, config.rows) if config.bands else lsh_params(config.threshold, config.num_perm)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents x bands) uint64 keys: a hash of each band's rows, salted by the band index."""
    keys = np.empty((len(sigs), bands), np.uint64)
    for i in range(bands):
        block = np.ascontiguousarray(sigs[:, i * rows : (i + 1) * rows])
        acc = np.full(len(sigs), ((i + 1) * _LENGTH_MIX) & MASK64, np.uint64)
        for j in range(rows):
            acc = fmix64(acc ^ block[:, j].astype(np.uint64)) + np.uint64(_WORD_BASE)
        keys[:, i] = acc
    return keys
