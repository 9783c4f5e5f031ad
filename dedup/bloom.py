"""n-gram hashes of normalized text and a numpy Bloom filter over them (GPT-2 paper, §4).

Normalization as in the paper: lower-cased alphanumeric words, so WikiText's escapes and all
punctuation vanish on both sides. n-gram hashes are computed in numpy over a whole batch (word
hashes from `dedup.minhash.tokenize`, then a polynomial over n consecutive words): no Python
object per n-gram.
"""

from __future__ import annotations

import math

import numpy as np

from dedup.minhash import byte_table, fmix64, tokenize, window_hashes
from webtext.core.config import DecontaminateConfig

_SALT = np.uint64(0x2545F4914F6CDD1D)
CHUNK = 1 << 15  # keys per vectorized lookup step
ALNUM_BYTES = byte_table(b"0123456789abcdefghijklmnopqrstuvwxyz", non_ascii=False)


def ngram_hashes(texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 hash of every n-gram of lower-cased ASCII-alphanumeric words of every text, and the
    index of the text it came from. `texts`: a list of str or an Arrow string array."""
    if not len(texts):
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    words, counts = tokenize(texts, ALNUM_BYTES)
    return window_hashes(words, counts, n, short_as_one=False)


class BloomFilter:
    """A Bloom filter over uint64 keys as a numpy bit array: m = 2^j bits, k probes by double hashing.

    Equal-size filters merge by bitwise OR (`|=`). `contains` tests probe by probe on the keys
    still possibly present, so a miss costs ~2 probes on average.
    """

    def __init__(self, bits_log2: int, k: int, words: np.ndarray | None = None):
        self.bits_log2, self.k = bits_log2, k
        self.mask = np.uint64((1 << bits_log2) - 1)
        self.words = words if words is not None else np.zeros(max(1, (1 << bits_log2) >> 6), np.uint64)

    @classmethod
    def for_capacity(cls, n: int, false_positive_rate: float) -> BloomFilter:
        bits = max(64, math.ceil(-max(n, 1) * math.log(false_positive_rate) / math.log(2) ** 2))
        bits_log2 = math.ceil(math.log2(bits))
        k = max(1, round((1 << bits_log2) / max(n, 1) * math.log(2)))
        return cls(bits_log2, min(k, math.ceil(-math.log2(false_positive_rate)) + 2))

    def _probes(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return keys, fmix64(keys ^ _SALT) | np.uint64(1)

    def add(self, keys: np.ndarray) -> None:
        """Set the k bits of every key (through a byte-per-bit view: numpy has no fast OR-scatter)."""
        h1, h2 = self._probes(np.asarray(keys, np.uint64))
        bits = np.unpackbits(self.words.view(np.uint8), bitorder="little").view(bool)
        for i in range(self.k):
            bits[((h1 + np.uint64(i) * h2) & self.mask).astype(np.int64)] = True
        self.words = np.packbits(bits, bitorder="little").view(np.uint64)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.uint64)
        result = np.zeros(len(keys), bool)
        for lo in range(0, len(keys), CHUNK):  # cache-sized pieces
            result[lo : lo + CHUNK] = self._contains(keys[lo : lo + CHUNK])
        return result

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        alive = np.arange(len(keys))
        h1, h2 = self._probes(keys)
        for i in range(self.k):
            if not len(alive):
                break
            pos = h1 + np.uint64(i) * h2
            pos &= self.mask
            word = self.words[(pos >> np.uint64(6)).astype(np.intp)]
            hit = ((word >> (pos & np.uint64(63))) & np.uint64(1)).astype(bool)
            if not hit.all():
                alive, h1, h2 = alive[hit], h1[hit], h2[hit]
        result = np.zeros(len(keys), bool)
        result[alive] = True
        return result

    def __ior__(self, other: BloomFilter) -> BloomFilter:
        if (self.bits_log2, self.k) != (other.bits_log2, other.k):
            raise ValueError("Bloom filters of different sizes cannot be merged")
        self.words |= other.words
        return self

    def to_bytes(self) -> bytes:
        return np.array([self.bits_log2, self.k], np.uint64).tobytes() + self.words.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BloomFilter:
        bits_log2, k = np.frombuffer(data[:16], np.uint64).tolist()
        return cls(int(bits_log2), int(k), np.frombuffer(data[16:], np.uint64).copy())


def build_filter(texts: list[str], config: DecontaminateConfig) -> BloomFilter:
    """A Bloom filter of every n-gram of `texts`, sized for the configured false-positive rate."""
    hashes, _ = ngram_hashes(texts, config.ngram)
    hashes = np.unique(hashes)
    bloom = BloomFilter.for_capacity(len(hashes), config.false_positive_rate)
    bloom.add(hashes)
    return bloom
