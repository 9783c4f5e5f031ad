"""Decontamination: eval-set readers, vectorized n-gram hashes, the numpy Bloom filter, the stage."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from dedup.bloom import BloomFilter, ngram_hashes
from dedup.decontaminate import DECONTAMINATE
from dedup.evalsets import detokenize_wikitext, name_of, read_evalset, split_location
from dedup.overlap import EvalNgrams
from webtext.core import runner
from webtext.core.config import DecontaminateConfig
from webtext.core.failures import InputError
from webtext.pipeline import OVERLAP_WORK

VOCAB = [f"w{i}" for i in range(5000)]


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def test_ngram_hashes_normalize_like_the_paper():
    """Lower-cased alphanumeric words: punctuation, case, spacing and WikiText escapes vanish."""
    a, doc_a = ngram_hashes(["The  QUICK brown @-@ fox, jumps!"], 3)
    b, _ = ngram_hashes(["the quick brown fox jumps"], 3)
    assert np.array_equal(a, b) and len(a) == 3 and doc_a.tolist() == [0, 0, 0]
    c, doc = ngram_hashes(["", "one two", "a b c d", "x y z"], 3)
    assert doc.tolist() == [2, 2, 3]  # texts shorter than n have no n-grams
    assert len(set(c.tolist())) == 3


def test_ngram_hashes_are_a_function_of_the_words():
    """The same 8 words hash alike wherever they occur; different ones (almost surely) not."""
    rng = random.Random(0)
    text = random_text(rng, 500)
    hashes, _ = ngram_hashes([text, "prefix words " + text], 8)
    first, second = hashes[:493], hashes[493:]
    assert np.array_equal(first, second[2:])
    words = text.split()
    by_gram = {}
    for gram, h in zip((" ".join(words[i : i + 8]) for i in range(493)), first.tolist()):
        assert by_gram.setdefault(h, gram) == gram


def test_bloom_filter_members_no_false_positives_and_merge():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**63, 50_000, dtype=np.uint64)
    bloom = BloomFilter.for_capacity(len(keys), 1e-8)
    bloom.add(keys)
    assert bloom.contains(keys).all()
    assert bloom.contains(rng.integers(0, 2**63, 300_000, dtype=np.uint64)).sum() == 0
    half = BloomFilter.for_capacity(len(keys), 1e-8)
    half.add(keys[:25_000])
    other = BloomFilter.for_capacity(len(keys), 1e-8)
    other.add(keys[25_000:])
    half |= other
    assert np.array_equal(half.words, bloom.words)
    assert np.array_equal(BloomFilter.from_bytes(bloom.to_bytes()).words, bloom.words)
    with pytest.raises(ValueError, match="sizes"):
        half |= BloomFilter.for_capacity(10, 1e-8)


def test_eval_ngram_matches_per_document_and_set(tmp_path):
    rng = random.Random(4)
    (tmp_path / "a.txt").write_text("\n".join(random_text(rng, 2000) for _ in range(3)))
    (tmp_path / "b.txt").write_text(random_text(rng, 500))
    evals = EvalNgrams.build([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], 8, 1e-8)
    a_words = (tmp_path / "a.txt").read_text().split()
    b_words = (tmp_path / "b.txt").read_text().split()
    docs = [
        random_text(rng, 300),
        random_text(rng, 100) + " " + " ".join(a_words[:60]),
        "",
        " ".join(b_words[:10] + a_words[:9]),
    ]
    total, per_set, found = evals.matches(docs, 8)
    assert total.tolist() == [0, 53, 0, 5]  # 60 words: 53 8-grams; 10 words: 3, 9 words: 2
    assert per_set.tolist() == [[0, 53, 0, 2], [0, 0, 0, 3]]
    assert len(set(found.tolist())) == 56


def test_readers(tmp_path):
    wiki = tmp_path / "wikitext-2.test.tokens"
    wiki.write_text(
        " \n = Robert <unk> = \n \n He had a guest @-@ starring role , 1 @,@ 000 times in 3 @.@ 5 years .\n"
    )
    assert read_evalset(str(wiki)) == ["= Robert", "=", "He had a guest-starring role, 1,000 times in 3.5 years."]
    ptb = tmp_path / "ptb.test.txt"
    ptb.write_text(" no it was n't black monday \n the <unk> fell N points \n")
    assert read_evalset(str(ptb)) == ["no it wasn't black monday", "the", "fell N points"]
    lambada = tmp_path / "lambada_test.jsonl"
    lambada.write_text(json.dumps({"text": "a b\nc"}) + "\n\n" + json.dumps({"text": "d", "body": "e"}) + "\n")
    assert read_evalset(str(lambada)) == ["a b\nc", "d"]
    plain = tmp_path / "passages.txt"
    plain.write_text("first passage\n\n  second passage  \n")
    assert read_evalset(str(plain)) == ["first passage", "second passage"]
    pq.write_table(pa.table({"question": ["q1", None, "q2"], "text": ["x", "y", "z"]}), tmp_path / "qa.parquet")
    assert read_evalset(f"{tmp_path}/qa.parquet:question") == ["q1", "q2"]
    assert read_evalset(f"{tmp_path}/qa.parquet") == ["x", "y", "z"]
    body = tmp_path / "set.jsonl"
    body.write_text(json.dumps({"body": "e"}) + "\n")
    assert read_evalset(f"{body}:body") == ["e"]
    assert name_of(str(wiki)) == "wikitext-2.test" and name_of(f"{body}:body") == "set.body"
    assert split_location("s3://bucket/x.parquet") == ("s3://bucket/x.parquet", None)


def test_reader_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        read_evalset(str(bad))
    bad.write_text(json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: expected an object with a string 'text'"):
        read_evalset(str(bad))
    with pytest.raises(ValueError, match="missing.txt"):
        read_evalset(str(tmp_path / "missing.txt"))
    pq.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="t.parquet"):
        read_evalset(f"{tmp_path}/t.parquet:nope")


def test_detokenize_wikitext():
    assert (
        detokenize_wikitext("the U.S. @-@ based ( 1 @,@ 000 ) firm 's profit : 3 @.@ 5 %")
        == "the U.S.-based (1,000) firm's profit: 3.5%"
    )


def test_decontaminate_stage_drops_and_flags(tmp_path, local_ray):
    rng = random.Random(5)
    passage = random_text(rng, 60)
    (tmp_path / "lambada_test.jsonl").write_text(json.dumps({"text": passage}) + "\n")
    (tmp_path / "ptb.test.txt").write_text(random_text(rng, 200) + "\n")
    texts = [random_text(rng, 300) for _ in range(5)]
    texts[2] += " " + passage.upper()
    (tmp_path / "docs").mkdir()
    pq.write_table(pa.table({"id": [str(i) for i in range(5)], "text": texts}), tmp_path / "docs" / "p.parquet")
    config = DecontaminateConfig(evalsets=[str(tmp_path / "lambada_test.jsonl"), str(tmp_path / "ptb.test.txt")])
    stats = runner.run_stage(DECONTAMINATE, [str(tmp_path / "docs")], str(tmp_path / "clean"), config)
    assert (stats.input, stats.output, dict(stats.dropped)) == (5, 4, {"contaminated": 1})
    assert stats.outcomes == {"contaminated_by:lambada_test": 1, "contaminated_by:ptb.test": 0}
    assert "2" not in pq.read_table(tmp_path / "clean").column("id").to_pylist()
    report = json.loads((tmp_path / "clean" / "_overlap.json").read_text())
    assert report["sets"]["lambada_test"] == {"ngrams": 53, "found": 53, "percent": 100.0}
    assert report["sets"]["ptb.test"] == {"ngrams": 193, "found": 0, "percent": 0.0}
    flag = config.model_copy(update={"action": "flag"})
    stats = runner.run_stage(DECONTAMINATE, [str(tmp_path / "docs")], str(tmp_path / "flagged"), flag)
    flagged = pq.read_table(tmp_path / "flagged")
    assert stats.output == 5
    assert dict(zip(flagged.column("id").to_pylist(), flagged.column("eval_ngram_matches").to_pylist()))["2"] == 53


def test_an_eval_set_edited_in_place_redoes_the_stage(tmp_path, local_ray):
    """The result depends on the eval sets' contents: a rerun after one is edited in place is not
    skipped, while a rerun with nothing changed is."""
    rng = random.Random(7)
    texts = [random_text(rng, 300) for _ in range(4)]
    evalset = tmp_path / "set.jsonl"
    evalset.write_text(json.dumps({"text": texts[1]}) + "\n")
    (tmp_path / "docs").mkdir()
    pq.write_table(pa.table({"id": [str(i) for i in range(4)], "text": texts}), tmp_path / "docs" / "p.parquet")
    config = DecontaminateConfig(evalsets=[str(evalset)])
    args = (DECONTAMINATE, [str(tmp_path / "docs")], str(tmp_path / "clean"), config)
    assert dict(runner.run_stage(*args).dropped) == {"contaminated": 1}
    part = next((tmp_path / "clean").glob("*.parquet"))
    written = part.stat().st_mtime_ns
    assert dict(runner.run_stage(*args).dropped) == {"contaminated": 1}
    assert part.stat().st_mtime_ns == written  # skipped: same inputs, config, code and eval sets
    with evalset.open("a") as out:
        out.write(json.dumps({"text": texts[3]}) + "\n")
    assert dict(runner.run_stage(*args).dropped) == {"contaminated": 2}
    assert sorted(pq.read_table(tmp_path / "clean").column("id").to_pylist()) == ["0", "2"]
    evalset.unlink()
    with pytest.raises(InputError) as missing:  # one line naming the file, not the task's payload
        runner.run_stage(*args)
    assert str(missing.value).startswith(f"decontaminate: {evalset}: cannot read eval set")
    assert "\n" not in str(missing.value) and "Task(" not in str(missing.value)


def test_overlap_table_of_a_corpus(tmp_path, local_ray, monkeypatch, capsys):
    """`webtext overlap`: the share of each eval set's 8-grams found in the documents."""
    from dedup import chunks
    from webtext import cli

    monkeypatch.setattr(chunks, "CHUNK_ROWS", 2)  # several tasks whose found-bitmaps are ORed
    rng = random.Random(6)
    evalset = [random_text(rng, 100) for _ in range(4)]  # 4 x 93 distinct 8-grams
    (tmp_path / "set.jsonl").write_text("".join(json.dumps({"q": t}) + "\n" for t in evalset))
    docs = [random_text(rng, 50) for _ in range(6)]
    docs[1] += " " + evalset[0]  # all of passage 0
    docs[4] = " ".join(evalset[2].split()[:20]) + " " + docs[4]  # 13 of passage 2's 8-grams
    (tmp_path / "shards").mkdir()
    table = pa.table({"id": [str(i) for i in range(6)], "text": docs})
    pq.write_table(table, tmp_path / "shards" / "a.parquet", row_group_size=2)
    assert cli.main(["overlap", str(tmp_path / "shards"), "--evalset", f"{tmp_path}/set.jsonl:q"]) == 0
    report = json.loads((tmp_path / "shards" / "overlap.json").read_text())
    assert report["sets"]["set.q"] == {"ngrams": 372, "found": 106, "percent": round(100 * 106 / 372, 2)}
    assert report["documents"] == 6
    out = capsys.readouterr().out
    assert "set.q" in out and "28.49%" in out
    assert not (tmp_path / "shards" / OVERLAP_WORK).exists()  # the stage's folder goes once the report is out
    assert cli.main(["overlap", str(tmp_path / "shards"), "--evalset", "x.jsonl", "--ngram", "0"]) == 2


def test_xxhash_word_hash_is_stable():
    """Word hashes are xxh3_64 of the word's bytes: the same in every process and release."""
    from dedup.minhash import tokenize

    words, counts = tokenize(["Hello, World"])
    assert words.tolist() == [xxhash.xxh3_64_intdigest(b"hello"), xxhash.xxh3_64_intdigest(b"world")]
    assert counts.tolist() == [2]
