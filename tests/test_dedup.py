"""Dedup: signatures identical to datasketch, and the distributed dedup stage on a real local Ray."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from dedup import chunks as chunking
from dedup.dedup import DEDUP
from dedup.minhash import SCHEME, lsh_params, normalized_text, shingle_hash32, shingles, sign
from webtext.core import runner
from webtext.core.config import DedupConfig

VOCAB = [f"w{i}" for i in range(5000)]

PROSE = [
    "The Reddit-linked pages were scraped, cleaned and de-duplicated; only 8 million documents remained.",
    "Ünïcode wörds, ÇA VA? 東京タワー and naïve café owners don’t mind — “quotes” stay.",
    "",
    "!!! ... ???",
    "one",
    "exactly five words here now",
    "exactly six words here right now",
    "Language models are unsupervised multitask learners. " * 30,
]


def random_text(rng: random.Random, words: int = 300) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def near_copy(text: str, rng: random.Random, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


@pytest.mark.parametrize("hash_name", ["poly64", "xxh3", "sha1"])
def test_signatures_equal_datasketch_minhash(hash_name):
    rng = random.Random(0)
    texts = PROSE + [random_text(rng, rng.randint(0, 400)) for _ in range(40)]
    config = DedupConfig(hash=hash_name)
    signatures, keys = sign(pa.array(texts), config)
    alone = [sign([t], config)[0][0] for t in PROSE]  # batches of one short text
    assert np.array_equal(np.stack(alone), signatures[: len(PROSE)])
    for text, signature in zip(texts, signatures):
        reference = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME, hashfunc=shingle_hash32(config))
        reference.update_batch(shingles(normalized_text(text), config.shingle_words))
        assert np.array_equal(signature, reference.hashvalues), text[:40]
    # the exact-duplicate key is equal exactly when the normalized texts are
    by_key = {}
    for key, text in zip(keys.tolist(), texts):
        assert by_key.setdefault(key, normalized_text(text)) == normalized_text(text)
    assert len(by_key) == len({normalized_text(t) for t in texts})


def test_default_hash_is_datasketch_sha1_when_asked():
    """hash: sha1 is datasketch's own default hash function."""
    text = PROSE[0]
    config = DedupConfig(hash="sha1")
    reference = MinHash(num_perm=config.num_perm, seed=config.seed)
    reference.update_batch(shingles(normalized_text(text), config.shingle_words))
    assert np.array_equal(sign([text], config)[0][0], reference.hashvalues)


def test_normalization_ignores_case_spacing_and_ascii_punctuation():
    assert normalized_text("Hello,   WORLD!! it's") == normalized_text("hello world it s")
    assert normalized_text("café") != normalized_text("cafe")


def test_lsh_bands_favour_recall_at_the_threshold():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99
        assert 1 - (1 - threshold ** (rows + 1)) ** (128 // (rows + 1)) < 0.99  # the fewest candidates that do
    with pytest.raises(ValueError, match="bands"):
        DedupConfig(bands=3)
    with pytest.raises(ValueError):
        DedupConfig(threshold=0)


def test_node_ids_carry_chunk_and_row():
    """A node id is its chunk above its row: both come back, whatever the row's width."""
    rows = np.array([0, 1, 2**32 - 1])
    nodes = chunking.node_ids(2**31 + 5, rows)
    assert nodes.dtype == np.uint64
    assert chunking.chunk_of(nodes).tolist() == [2**31 + 5] * 3
    assert chunking.row_of(nodes).tolist() == rows.tolist()


def docs_table(texts, karma=None, created=None) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            "id": [f"{i:032x}" for i in range(n)],
            "url": [f"http://e.com/{i}" for i in range(n)],
            "text": texts,
            "karma": pa.array(karma if karma is not None else [3] * n, pa.int64()),
            "created_utc": pa.array(created if created is not None else [1000 + i for i in range(n)], pa.int64()),
        }
    )


def run_dedup(tmp_path, tables, config=None, name="out"):
    config = config or DedupConfig()
    folder = tmp_path / f"{name}_in"
    folder.mkdir()
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=4)
    stats = runner.run_stage(DEDUP, [str(folder)], str(tmp_path / name), config)
    kept = pq.read_table(tmp_path / name)
    return stats, dict(zip(kept.column("id").to_pylist(), kept.column("duplicate_cluster").to_pylist()))


def test_dedup_stage_exact_near_and_survivors(tmp_path, local_ray, monkeypatch):
    monkeypatch.setattr(chunking, "CHUNK_ROWS", 8)  # several chunks, pairs across chunks
    rng = random.Random(1)
    originals = [random_text(rng) for _ in range(24)]
    texts = originals + [
        originals[0].upper() + " !!",  # 24: exact copy of 0 with more karma: survives
        near_copy(originals[1], rng, 3),  # 25: near copy of 1
        near_copy(originals[2], rng, 120),  # 26: 120 of 300 words replaced: not a duplicate at 0.8
        originals[3],  # 27: exact copy of 3, same karma, later: removed
        near_copy(originals[3], rng, 2),  # 28: near copy of 3
    ]
    karma = [3] * 24 + [100, 1, 1, 3, 1]
    ids = [f"{i:032x}" for i in range(len(texts))]
    table = docs_table(texts, karma)
    stats, kept = run_dedup(tmp_path, [table.slice(0, 13), table.slice(13)], DedupConfig(buckets=3))
    assert (stats.input, stats.output) == (29, 25)
    assert dict(stats.dropped) == {"exact_duplicate": 2, "near_duplicate": 2}
    assert ids[0] not in kept and kept[ids[24]] == ids[24]
    assert ids[25] not in kept and kept[ids[1]] == ids[1]
    assert ids[27] not in kept and ids[28] not in kept and kept[ids[3]] == ids[3]
    assert kept[ids[26]] is None and kept[ids[2]] is None and kept[ids[5]] is None
    out_schema = pq.read_schema(next((tmp_path / "out").glob("part-*.parquet")))
    assert "duplicate_cluster" in out_schema.names and "signature" not in out_schema.names


def test_chain_of_near_duplicates_is_one_cluster(tmp_path, local_ray):
    """A~B, B~C, C~D but A and D far apart: connected components need several propagation rounds."""
    rng = random.Random(5)
    chain = [random_text(rng, 400)]
    for _ in range(5):
        chain.append(near_copy(chain[-1], rng, 3))
    order = [3, 0, 5, 1, 4, 2]  # scatter the chain over rows
    texts = [chain[i] for i in order] + [random_text(rng) for _ in range(4)]
    created = [5000 - 10 * i for i in range(len(texts))]  # later rows are earlier posts
    stats, kept = run_dedup(tmp_path, [docs_table(texts, [7] * len(texts), created)], DedupConfig(max_pairs_per_doc=1))
    assert stats.output == 5 and dict(stats.dropped) == {"near_duplicate": 5}
    survivor = f"{5:032x}"  # the earliest post of the chain (row 5)
    assert kept[survivor] == survivor
    assert stats.outcomes["component_rounds"] >= 2


def test_survivor_rule_karma_then_created_then_id(tmp_path, local_ray):
    text = random_text(random.Random(2))
    table = pa.table(
        {
            "id": ["b", "a", "c", "d", "e"],
            "text": [text] * 5,
            "karma": pa.array([5, 5, 5, None, 1], pa.int64()),
            "created_utc": pa.array([10, 10, None, 1, 1], pa.int64()),
        }
    )
    stats, kept = run_dedup(tmp_path, [table])
    assert kept == {"a": "a"}  # karma 5 ties; created 10 ties (null is latest); id a < b
    assert dict(stats.dropped) == {"exact_duplicate": 4}


def test_documents_without_karma_and_empty_input(tmp_path, local_ray):
    table = pa.table({"id": ["x", "y", "z"], "text": ["same words here", "Same words, here!", "other"]})
    stats, kept = run_dedup(tmp_path, [table], name="nokarma")
    assert stats.output == 2 and kept == {"x": "x", "z": None}
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    stats, kept = run_dedup(tmp_path, [empty], name="empty")
    assert (stats.input, stats.output, kept) == (0, 0, {})


def test_exact_only_and_missing_column(tmp_path, local_ray):
    rng = random.Random(3)
    a = random_text(rng)
    stats, _ = run_dedup(tmp_path, [docs_table([a, a, near_copy(a, rng, 2)])], DedupConfig(near=False), name="exact")
    assert dict(stats.dropped) == {"exact_duplicate": 1}
    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"id": ["x"]}), tmp_path / "bad" / "p.parquet")
    with pytest.raises(runner.InputError, match="text"):
        runner.run_stage(DEDUP, [str(tmp_path / "bad")], str(tmp_path / "bad_out"), DedupConfig())
