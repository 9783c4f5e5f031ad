"""MinHash signatures: `dedup.minhash.signatures` (numpy over a batch) vs datasketch's per-document loop.

Same shingles, num_perm and seed; checks that the signatures are identical, then times both,
alternating runs. Text: WikiText-2 paragraphs from ../shared/data when present (documents of
~300 words, as web pages after extraction), else generated words.

    .venv/bin/python benchmarks/dedup_signatures.py [--docs 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
from datasketch import MinHash

from dedup.minhash import SCHEME, normalized_text, shingle_hash32, shingles, signatures
from webtext.core.config import DedupConfig

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "evalsets" / "wikitext-2.test.tokens"


def documents(n: int) -> list[str]:
    if WIKITEXT.exists():
        words = WIKITEXT.read_text(encoding="utf-8").split()
    else:
        rng = random.Random(0)
        words = [f"w{rng.randrange(20000)}" for _ in range(300_000)]
    rng = random.Random(1)
    docs = []
    for _ in range(n):
        start = rng.randrange(len(words) - 400)
        docs.append(" ".join(words[start : start + rng.randint(150, 450)]))
    return docs


def datasketch_loop(docs: list[str], config: DedupConfig, hashfunc) -> np.ndarray:
    """The per-document loop the old `Signer` ran (MinHash per document, update_batch)."""
    out = []
    for text in docs:
        m = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME, hashfunc=hashfunc)
        m.update_batch(shingles(normalized_text(text), config.shingle_words))
        out.append(m.hashvalues)
    return np.stack(out)


def batched(docs: list[str], config: DedupConfig, batch: int = 2000) -> np.ndarray:
    return np.concatenate([signatures(docs[i : i + batch], config) for i in range(0, len(docs), batch)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    docs = documents(args.docs)
    words = sum(len(d.split()) for d in docs)
    print(f"{len(docs)} documents, {words / len(docs):.0f} words each on average, num_perm 128, 5-word shingles")
    runs = {}
    for hash_name in ("poly64", "xxh3", "sha1"):
        config = DedupConfig(hash=hash_name)
        fn = shingle_hash32(config)
        assert np.array_equal(batched(docs[:200], config), datasketch_loop(docs[:200], config, fn)), hash_name
        runs[f"webtext {hash_name}"] = partial(batched, docs, config)
        runs[f"datasketch loop {hash_name}"] = partial(datasketch_loop, docs, config, fn)
    print("signatures identical to datasketch.MinHash(hashfunc=same) for poly64, xxh3, sha1: yes")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternated, so every variant sees the same machine load
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    per_doc = {name: statistics.median(t) / len(docs) * 1e6 for name, t in times.items()}
    for name, us in per_doc.items():
        print(f"{name:24s} {us:8.1f} us/doc")
    for hash_name in ("poly64", "xxh3", "sha1"):
        ratio = per_doc[f"datasketch loop {hash_name}"] / per_doc[f"webtext {hash_name}"]
        print(f"same hash {hash_name:6s}: webtext is {ratio:5.1f}x the datasketch loop")
    fastest = min(per_doc[f"datasketch loop {h}"] for h in ("poly64", "xxh3", "sha1"))
    print(
        f"default (poly64) vs the fastest datasketch loop: {fastest / per_doc['webtext poly64']:.1f}x; "
        f"vs datasketch's default sha1 loop: {per_doc['datasketch loop sha1'] / per_doc['webtext poly64']:.1f}x"
    )


if __name__ == "__main__":
    main()
