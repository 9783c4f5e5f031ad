"""Exact and near-duplicate removal, and Bloom-filter decontamination, on real datasketch and rbloom."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash

from dedup.decontaminate import ContaminationCounter, build_filter, ngrams, read_evalset
from dedup.minhash import SCHEME, Signer, find_duplicates, normalized_words, shingles
from webtext import pipeline
from webtext.config import DecontaminateConfig, DedupConfig
from webtext.schemas import DOCS

VOCAB = [f"w{i}" for i in range(5000)]


def random_text(rng: random.Random, words: int = 300) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def near_copy(text: str, rng: random.Random, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


def docs_table(texts: list[str], karma: list[int] | None = None) -> pa.Table:
    rows = [
        {"id": f"{i:032x}", "url": f"http://e.com/{i}", "text": t, "karma": (karma or [3] * len(texts))[i], "created_utc": 1000 + i}
        for i, t in enumerate(texts)
    ]
    return pa.Table.from_pylist(rows, schema=DOCS)


def test_signatures_equal_datasketch_minhash():
    config = DedupConfig()
    text = random_text(random.Random(0))
    signed = Signer(config)(docs_table([text]))
    reference = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
    for shingle in shingles(normalized_words(text), config.shingle_words):
        reference.update(shingle)
    assert np.array_equal(np.asarray(signed.column("signature")[0].as_py()), reference.hashvalues)


def test_exact_and_near_duplicates_keep_the_most_karma():
    rng = random.Random(1)
    originals = [random_text(rng) for _ in range(20)]
    texts = originals + [originals[0].upper(), near_copy(originals[1], rng, 3), near_copy(originals[2], rng, 120)]
    karma = [3] * 20 + [100, 1, 1]
    keys = Signer(DedupConfig())(docs_table(texts, karma))
    duplicates = find_duplicates(keys, DedupConfig())
    ids = keys.column("id").to_pylist()
    assert duplicates[ids[0]] == ("exact_duplicate", ids[20])  # the copy with 100 karma survives
    assert duplicates[ids[21]] == ("near_duplicate", ids[1])
    assert ids[22] not in duplicates  # 120 of 300 words replaced: not a near duplicate at 0.8
    assert len(duplicates) == 2


def test_dedup_stage_on_ray(tmp_path, local_ray):
    rng = random.Random(2)
    originals = [random_text(rng) for _ in range(10)]
    texts = originals + [originals[3], near_copy(originals[4], rng, 2)]
    pq.write_table(docs_table(texts), tmp_path / "docs.parquet")
    stats = pipeline.dedup(tmp_path / "docs.parquet", tmp_path / "deduped", DedupConfig())
    assert (stats.input, stats.output) == (12, 10)
    assert dict(stats.dropped) == {"exact_duplicate": 1, "near_duplicate": 1}
    kept = pq.read_table(tmp_path / "deduped")
    clusters = [c for c in kept.column("duplicate_cluster").to_pylist() if c]
    assert sorted(clusters) == sorted([f"{3:032x}", f"{4:032x}"])
    assert "signature" not in kept.column_names


def test_bloom_filter_has_no_false_positives_on_random_ngrams():
    rng = random.Random(3)
    config = DecontaminateConfig()
    evalset = [random_text(rng, 2000) for _ in range(10)]
    bloom = build_filter(evalset, config)
    assert all(g in bloom for g in ngrams(evalset[0], config.ngram))
    probes = (" ".join(rng.choice(VOCAB) for _ in range(config.ngram)) for _ in range(100_000))
    assert sum(p in bloom for p in probes) == 0


def test_ngrams_normalize_like_the_paper():
    assert ngrams("The  QUICK brown @-@ fox, jumps!", 3) == ["the quick brown", "quick brown fox", "brown fox jumps"]


def test_contamination_counts_and_stage(tmp_path, local_ray):
    rng = random.Random(4)
    passage = random_text(rng, 60)
    (tmp_path / "lambada_test.jsonl").write_text(json.dumps({"text": passage}) + "\n")
    (tmp_path / "ptb.test.txt").write_text(random_text(rng, 200) + "\n")
    assert read_evalset(tmp_path / "lambada_test.jsonl") == [passage]
    texts = [random_text(rng) for _ in range(5)]
    texts[2] = texts[2] + " " + passage
    pq.write_table(docs_table(texts), tmp_path / "docs.parquet")
    config = DecontaminateConfig(evalsets=[tmp_path / "lambada_test.jsonl", tmp_path / "ptb.test.txt"])
    counted = ContaminationCounter({"lambada_test": build_filter([passage], config).save_bytes()}, config)(docs_table(texts))
    assert counted.column("matches_lambada_test").to_pylist() == [0, 0, 53, 0, 0]  # 60 words: 53 8-grams
    stats = pipeline.decontaminate(tmp_path / "docs.parquet", tmp_path / "clean", config)
    assert (stats.input, stats.output, dict(stats.dropped)) == (5, 4, {"contaminated": 1})
    assert stats.outcomes == {"contaminated_by:lambada_test": 1, "contaminated_by:ptb.test": 0}
    flagged = pipeline.decontaminate(tmp_path / "docs.parquet", tmp_path / "flagged", config.model_copy(update={"action": "flag"}))
    assert flagged.output == 5
    assert sorted(pq.read_table(tmp_path / "flagged").column("eval_ngram_matches").to_pylist())[-1] >= 53
