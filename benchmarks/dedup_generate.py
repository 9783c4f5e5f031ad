"""Generate a dedup benchmark corpus: unrelated documents, exact copies, and near copies planted
at a known Jaccard similarity (of 5-word shingle sets, computed exactly) between 0.7 and 1.0.

Writes DIR/docs/part-NNNNN.parquet (id, url, text, karma, created_utc) and DIR/truth.parquet
(copy, source, jaccard, kind): one row per planted pair; every source has one copy, so a pair is
found when one of its two documents is removed.

    .venv/bin/python benchmarks/dedup_generate.py DIR --docs 100000 [--near 0.1] [--exact 0.02]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

VOCAB_SIZE = 50_000
N = 5  # shingle words, as DedupConfig's default


def letters(i: int) -> str:
    word = ""
    while True:
        i, r = divmod(i, 26)
        word += chr(97 + r)
        if not i:
            return "x" + word


def shingle_set(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + N]) for i in range(len(words) - N + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def near_copy(words: list[str], target: float, rng: random.Random, vocab: list[str]) -> tuple[list[str], float]:
    """Replace random words until the shingle Jaccard with the original reaches `target`."""
    original = shingle_set(words)
    copy = list(words)
    # each replaced word removes up to N shingles of |S|; J ~ (|S|-kN)/(|S|+kN) -> k
    k = max(1, int(len(original) * (1 - target) / (N * (1 + target))))
    for i in rng.sample(range(len(copy)), min(k, len(copy))):
        copy[i] = rng.choice(vocab)
    j = jaccard(original, shingle_set(copy))
    while j > target + 0.005:
        copy[rng.randrange(len(copy))] = rng.choice(vocab)
        j = jaccard(original, shingle_set(copy))
    return copy, j


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--near", type=float, default=0.1, help="share of documents that are near copies")
    parser.add_argument(
        "--exact", type=float, default=0.02, help="share that are exact copies (case/punctuation changed)"
    )
    parser.add_argument("--rows-per-file", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vocab = [letters(i) for i in range(VOCAB_SIZE)]  # no digits: datatrove normalizes numbers
    n_near, n_exact = int(args.docs * args.near), int(args.docs * args.exact)
    n_unique = args.docs - n_near - n_exact
    (args.out / "docs").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    truth: list[dict] = []
    part = 0

    def emit(i: int, text: str) -> str:
        nonlocal rows, part
        doc_id = f"{i:032x}"
        rows.append(
            {
                "id": doc_id,
                "url": f"http://example.com/{i}",
                "text": text,
                "karma": rng.randint(3, 500),
                "created_utc": 1_100_000_000 + rng.randrange(10**7),
            }
        )
        if len(rows) == args.rows_per_file:
            pq.write_table(pa.Table.from_pylist(rows), args.out / "docs" / f"part-{part:05d}.parquet")
            rows, part = [], part + 1
        return doc_id

    sources: list[tuple[str, list[str]]] = []
    order = ["u"] * n_unique + ["n"] * n_near + ["e"] * n_exact
    rng.shuffle(order)
    for i, kind in enumerate(order):
        if kind == "u" or len(sources) < 10:
            words = [rng.choice(vocab) for _ in range(rng.randint(100, 500))]
            sources.append((emit(i, " ".join(words)), words))
            continue
        source_id, words = sources.pop(rng.randrange(len(sources)))  # one copy per source
        if kind == "e":
            text = " ".join(words).upper().replace(" ", "  ") + "!"
            truth.append({"copy": emit(i, text), "source": source_id, "jaccard": 1.0, "kind": "exact"})
        else:
            copy, j = near_copy(words, rng.uniform(0.7, 1.0), rng, vocab)
            truth.append({"copy": emit(i, " ".join(copy)), "source": source_id, "jaccard": j, "kind": "near"})
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), args.out / "docs" / f"part-{part:05d}.parquet")
    pq.write_table(pa.Table.from_pylist(truth), args.out / "truth.parquet")
    print(f"{args.docs} documents, {len(truth)} planted pairs -> {args.out}")


if __name__ == "__main__":
    main()
