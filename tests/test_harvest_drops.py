"""The harvest's examples of its dropped submissions: every reason, the columns to judge a drop, the
same rows whatever the split, and all of them with `keep_dropped: all`."""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
import yaml

from crawler.harvest import HARVEST, REASONS, TRUNCATED, BatchFilter, DropExamples, Submission, id_keys
from tests.corpora import record, write_dump
from webtext.cli import main
from webtext.core import failures
from webtext.core.config import HarvestConfig
from webtext.core.runner import run_stage

WINDOW = {"start_utc": 1119000000, "end_utc": 1120000000}
PLANTED = [
    record("ok1", "http://example.com/story", 5),
    record("dup", "http://EXAMPLE.com/story?utm_source=x", 4),  # the same URL: duplicate_url in the merge
    record("self", "https://www.reddit.com/r/news/comments/s/", 10, is_self=True),
    record("nourl", None, 10),
    record("nsfw", "http://nsfw.example.net/x", 50, over_18=True, subreddit="pics"),
    record("nodate", "http://example.com/nodate", 10, created_utc=None),
    record("early", "http://example.com/early", 10, created_utc=1000),
    record("spam", "http://example.com/spam", 10, subreddit="Spam"),
    record("low", "http://example.com/low", 1),  # read's low_karma, or the merge's under url_sum
    record("ftp", "ftp://example.com/x", 10),
    record("rl", "https://reddit.com/r/pics", 10),
    record("wiki", "https://en.wikipedia.org/wiki/X", 10),
    record("img", "https://i.imgur.com/a.jpg", 10),
    record("ads", "http://ads.example/offer", 10),
    record("pdf", "http://example.com/file.pdf", 10),
]
EVERY_REASON = {*REASONS[1:], "malformed", TRUNCATED, "duplicate_url"}


def planted_dumps(folder):
    folder.mkdir()
    lines = [json.dumps(r) for r in PLANTED] + ['{"id": "broken", "url": ']
    write_dump(folder / "RS_a.zst", ("\n".join(lines) + "\n").encode())
    cut = [json.dumps(record(f"b{i}", f"http://example.org/{i}", 7)) for i in range(2000)]
    whole = write_dump(folder / "RS_b.zst", ("\n".join(cut) + "\n").encode()).read_bytes()
    (folder / "RS_b.zst").write_bytes(whole[: len(whole) // 2])  # its tail is lost: truncated_dump


@pytest.mark.parametrize("rule", ["submission", "url_sum"])
def test_every_reason_has_its_examples_and_keep_all_keeps_every_drop(tmp_path, local_ray, capsys, rule):
    planted_dumps(tmp_path / "dumps")
    harvest = {
        **WINDOW,
        "karma_rule": rule,
        "blocked_subreddits": ["spam"],
        "blocked_domains": ["ads.example"],
        "on_truncated": "warn",
        "keep_dropped": "all",
        "buckets": 3,
    }
    (tmp_path / "build.yaml").write_text(yaml.safe_dump({"harvest": harvest}))
    out = tmp_path / "harvest"
    assert main(["harvest", str(tmp_path / "dumps"), "--out", str(out), "--config", str(tmp_path / "build.yaml")]) == 0
    stats = json.loads((out / "_stats.json").read_text())
    counted = {reason: n for reason, n in stats["dropped"].items() if n}
    assert set(counted) == EVERY_REASON
    assert sorted(stats["samples"]) == sorted(counted)
    capsys.readouterr()
    assert main(["inspect", str(out), "--dropped"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(f"{r}: {n} example(s)" for r, n in counted.items())
    for reason, n in counted.items():
        assert main(["inspect", str(out), "--dropped", reason, "-n", "100"]) == 0
        assert f"{out}: {n} example(s) of {reason}, showing {min(n, 100)}" in capsys.readouterr().out
        assert failures.read_dropped(str(out), reason).num_rows == n
    rows = {r["id"]: r for reason in counted for r in failures.read_dropped(str(out), reason).to_pylist() if r["id"]}
    nsfw = rows["nsfw"]
    assert (nsfw["drop_reason"], nsfw["url"]) == ("nsfw", "http://nsfw.example.net/x")  # the URL as given
    assert nsfw["text"] == "subreddit: pics\nscore: 50\ntitle: title nsfw"
    assert rows["nourl"]["url"] is None and rows["ftp"]["url"] == "ftp://example.com/x"
    assert (rows["dup"]["drop_reason"], rows["dup"]["url"]) == ("duplicate_url", "http://example.com/story")
    assert rows["low"]["drop_reason"] == "low_karma" and "score: 1\n" in rows["low"]["text"]
    assert "ok1" not in rows and {r["key"] for r in rows.values()} == {xxhash.xxh64_intdigest(i.encode()) for i in rows}
    for reason, needle in (("malformed", '{"id": "broken", "url": '), (TRUNCATED, "RS_b.zst: dump ends early")):
        assert needle in failures.read_dropped(str(out), reason).column("text")[0].as_py()


def many_records(n: int, seed: int = 5) -> list[dict]:
    """Submissions of every reason the read can give and reposted URLs, in random order."""
    rng = random.Random(seed)
    kinds = [r for r in PLANTED if r["id"] != "ok1"]
    rows = []
    for i in range(n):
        base = dict(rng.choice(kinds))
        base["id"] = f"{base['id']}{i:x}"
        if base["url"] and rng.random() < 0.5:
            base["url"] = f"{base['url']}/{rng.randrange(40)}"
        rows.append(base)
    return rows


def test_examples_are_the_smallest_keys_of_all_drops_whatever_the_split(tmp_path, local_ray):
    """`keep_dropped: 3` on one task and one bucket, and on many byte ranges and buckets, keeps the
    same rows: per reason the 3 smallest keys of every dropped row (`keep_dropped: all`)."""
    lines = [json.dumps(r) for r in many_records(1500)]
    (tmp_path / "RS.jsonl").write_text("\n".join(lines) + "\n")
    config = HarvestConfig(**WINDOW, blocked_subreddits=["spam"], blocked_domains=["ads.example"])

    def examples(name: str, **settings) -> tuple[Counter, dict[str, pa.Table]]:
        out = str(tmp_path / name)
        stats = run_stage(HARVEST, [str(tmp_path / "RS.jsonl")], out, config.model_copy(update=settings))
        return stats.dropped, {reason: failures.read_dropped(out, reason) for reason in stats.samples}

    dropped, every = examples("all", keep_dropped="all", buckets=1)
    assert {r: t.num_rows for r, t in every.items()} == {r: n for r, n in dropped.items() if n}
    expected = {reason: failures.smallest(table, 3) for reason, table in every.items()}
    for name, settings in (("one", dict(buckets=1)), ("split", dict(buckets=5, split_bytes=20_000))):
        _, got = examples(name, keep_dropped=3, **settings)
        assert got.keys() == expected.keys() and len(got) >= 12
        for reason, table in got.items():
            assert table.equals(expected[reason]), (name, reason)
    dropped, none = examples("none", keep_dropped=0, buckets=1)
    assert sum(dropped.values()) > 0 and none == {} and not (tmp_path / "none" / "_dropped").exists()


class CountingSampler(failures.DropSampler):
    """A sampler that also records how many rows each call handed it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.rows: list[int] = []

    def add(self, dropped: pa.Table) -> None:
        self.rows.append(dropped.num_rows)
        super().add(dropped)


def test_a_task_hands_the_sampler_only_rows_that_can_be_kept(tmp_path):
    """Batch after batch, `DropExamples` keeps what a sampler of every dropped row keeps, handing the
    sampler a small fraction of the drops: about `keep` per reason and doubling of the rows seen, not
    `keep` per reason and batch."""
    records = [Submission(**r) for r in many_records(6000, seed=9)]
    config = HarvestConfig(**WINDOW, blocked_subreddits=["spam"], blocked_domains=["ads.example"])
    few = DropExamples(failures.DropSink(str(tmp_path / "few"), 4), "t00000", REASONS)
    every = DropExamples(failures.DropSink(str(tmp_path / "all"), None), "t00000", REASONS)
    few.sampler = CountingSampler(str(tmp_path / "few"), 4, "t00000")
    dropped = Counter()
    for start in range(0, len(records), 100):
        BatchFilter(config).batch(records[start : start + 100], dropped, few)
        BatchFilter(config).batch(records[start : start + 100], Counter(), every)
    few.close()
    every.close()
    reasons = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert reasons == sorted(p.name for p in (tmp_path / "few").iterdir()) == sorted(dropped)
    for reason in reasons:
        whole = pq.read_table(tmp_path / "all" / reason)
        assert whole.num_rows == dropped[reason] > 4
        assert pq.read_table(tmp_path / "few" / reason).equals(failures.smallest(whole, 4))
    assert sum(few.sampler.rows) < 600 < 60 * 4 * len(reasons)


def test_id_keys_are_xxh64_of_the_ids():
    rng = random.Random(2)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789é_"
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(3000)] + [None, ""]
    array = pa.array(ids, pa.string())
    for part in (array, array.slice(17, 1000), array.slice(2990)):
        expected = [
            xxhash.xxh64_intdigest(i.encode()) if i and len(i.encode()) < 32 else 0 for i in part.to_pylist()
        ]  # 0: the sampler keys those rows itself
        assert id_keys(part).tolist() == expected
