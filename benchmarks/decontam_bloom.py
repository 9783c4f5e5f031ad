"""Decontamination speed: vectorized n-gram hashing and the numpy Bloom filter vs the old path
(a Python string per 8-gram, hashed into rbloom) and vs rbloom on the same precomputed hashes;
false positives of the default filter on 10M random probes.

    .venv/bin/python benchmarks/decontam_bloom.py [--probes 10000000] [--docs 2000]

Eval sets: ../shared/data/evalsets (WikiText-2, PTB, LAMBADA) when present, else generated text.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from pathlib import Path

import numpy as np
import xxhash
from rbloom import Bloom

from dedup.bloom import build_filter, ngram_hashes
from dedup.evalsets import read_evalset
from webtext.core.config import DecontaminateConfig

EVALSETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "evalsets"
_ALNUM = re.compile(r"[a-z0-9]+")


def old_ngrams(text: str, n: int) -> list[str]:
    """The previous implementation: one Python string per n-gram."""
    words = _ALNUM.findall(text.lower())
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def old_hash(ngram: str) -> int:
    return xxhash.xxh3_128_intdigest(ngram.encode()) - (1 << 127)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=10_000_000)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = DecontaminateConfig()
    if EVALSETS.exists():
        eval_texts = [t for f in sorted(EVALSETS.glob("*test*")) for t in read_evalset(str(f))]
        corpus_words = " ".join(read_evalset(str(EVALSETS / "wikitext-2.valid.tokens"))).split()
    else:
        rng = random.Random(0)
        eval_texts = [" ".join(f"w{rng.randrange(30000)}" for _ in range(100)) for _ in range(5000)]
        corpus_words = [f"w{rng.randrange(30000)}" for _ in range(500_000)]
    rng = random.Random(1)
    docs = []
    for _ in range(args.docs):
        start = rng.randrange(len(corpus_words) - 800)
        docs.append(" ".join(corpus_words[start : start + rng.randint(200, 800)]))
    bloom = build_filter(eval_texts, config)
    eval_hashes = np.unique(ngram_hashes(eval_texts, config.ngram)[0])
    print(
        f"eval sets: {len(eval_texts)} passages, {len(eval_hashes)} distinct {config.ngram}-grams; "
        f"filter {bloom.words.nbytes / 2**20:.1f} MiB, k={bloom.k}"
    )

    # 1. n-gram hashing: vectorized vs one Python string per n-gram
    grams = len(ngram_hashes(docs, config.ngram)[0])
    ours = best_of(lambda: ngram_hashes(docs, config.ngram), args.repeats)
    old = best_of(lambda: [old_hash(g) for d in docs for g in old_ngrams(d, config.ngram)], args.repeats)
    print(
        f"n-gram hashing: webtext {grams / ours / 1e6:.1f}M n-grams/s, old strings+xxh3 {grams / old / 1e6:.2f}M/s: {old / ours:.1f}x"
    )

    # 2. lookups on precomputed hashes: numpy Bloom vs rbloom (identity hash of Python ints)
    rng_np = np.random.default_rng(2)
    probes = rng_np.integers(0, 2**63, args.probes, dtype=np.uint64)
    rb = Bloom(len(eval_hashes), config.false_positive_rate, hash_func=lambda x: x)
    rb.update(int(h) - (1 << 63) for h in eval_hashes)
    sample = [int(p) - (1 << 63) for p in probes[:1_000_000]]
    ours = best_of(lambda: bloom.contains(probes), 1)
    theirs = best_of(lambda: sum(p in rb for p in sample), args.repeats) * (args.probes / len(sample))
    false_positives = int(bloom.contains(probes).sum())
    print(
        f"Bloom lookups (1 core): webtext numpy {args.probes / ours / 1e6:.1f}M/s, rbloom {args.probes / theirs / 1e6:.1f}M/s: "
        f"{theirs / ours:.1f}x; false positives in {args.probes:,} random probes: {false_positives}"
    )
    assert bloom.contains(eval_hashes).all()

    # 3. whole documents: hash + look up every 8-gram of a batch
    ours = best_of(lambda: bloom.contains(ngram_hashes(docs, config.ngram)[0]), args.repeats)
    old_bloom = Bloom(len(eval_hashes), config.false_positive_rate, old_hash)
    old_bloom.update(g for t in eval_texts for g in old_ngrams(t, config.ngram))
    old = best_of(lambda: [sum(g in old_bloom for g in old_ngrams(d, config.ngram)) for d in docs], args.repeats)
    print(
        f"documents end to end: webtext {grams / ours / 1e6:.1f}M n-grams/s ({len(docs) / ours:.0f} docs/s), "
        f"old ContaminationCounter path {grams / old / 1e6:.2f}M/s: {old / ours:.1f}x"
    )


if __name__ == "__main__":
    main()
