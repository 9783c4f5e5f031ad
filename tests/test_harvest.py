"""Harvest on dumps written here in every compression and era shape, and on the real June-2005 dump."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest

from crawler.harvest import HARVEST, DumpError, harvest_file, merge_candidates
from tests.corpora import RECORDS, canonical_looking_urls, dump_bytes, tricky_urls, write_dump
from webtext.core.config import HarvestConfig
from webtext.core.runner import run_stage

EXPECTED_DROPS = {
    "duplicate_url": 1,
    "low_karma": 2,
    "self_post": 1,
    "nsfw": 1,
    "media_domain": 1,
    "wikipedia": 1,
    "file_extension": 1,
    "reddit_link": 1,
    "invalid_url": 1,
    "no_url": 1,
    "malformed": 2,
}


@pytest.mark.parametrize(
    "name", ["RS_2005-06.zst", "RS_2005-06.xz", "RS_2005-06.bz2", "RS_2005-06.gz", "RS_2005-06.jsonl"]
)
def test_every_submission_is_kept_or_counted_under_one_reason(tmp_path, name, caplog):
    path = write_dump(tmp_path / name, dump_bytes())
    with caplog.at_level(logging.WARNING):
        candidates, stats = harvest_file(path, HarvestConfig())
    urls = merge_candidates(candidates, HarvestConfig(), stats)
    stats.check()
    assert stats.input == len(RECORDS) + 2
    assert dict(stats.dropped) == EXPECTED_DROPS
    assert sorted(urls.column("url").to_pylist()) == [
        "http://example.com/story",
        "http://news.example.org/x?id=1&page=2",
    ]
    story = next(row for row in urls.to_pylist() if row["url"] == "http://example.com/story")
    assert sorted(story["reddit_ids"]) == ["a1", "a2"] and sorted(story["scores"]) == [3, 5]
    assert story["created_utc"] == 1119800000 and story["karma"] == 5 and story["domain"] == "example.com"
    assert f"{path}:{len(RECORDS) + 1}: malformed submission" in caplog.text


def test_url_sum_rule_and_date_window(tmp_path):
    path = write_dump(tmp_path / "d.jsonl", dump_bytes())
    config = HarvestConfig(karma_rule="url_sum", min_karma=9)
    candidates, stats = harvest_file(path, config)
    urls = merge_candidates(candidates, config, stats)
    assert urls.column("url").to_pylist() == ["http://example.com/story"]  # 5 + 3 + 1 >= 9: a13 counts here
    assert sorted(urls.column("reddit_ids")[0].as_py()) == ["a1", "a13", "a2"] and urls.column("karma").to_pylist() == [
        9
    ]
    windowed = HarvestConfig(start_utc=1119840000)
    candidates, stats = harvest_file(path, windowed)
    assert stats.dropped["out_of_window"] == 1  # a2 was posted before the window


def test_unreadable_dump_names_the_file(tmp_path):
    path = tmp_path / "RS_bad.zst"
    path.write_bytes(b"this is not zstd")
    with pytest.raises(DumpError, match="RS_bad.zst"):
        harvest_file(path, HarvestConfig())


@pytest.mark.parametrize("buckets", [1, 7])
def test_harvest_stage_on_ray_merges_urls_across_files(tmp_path, local_ray, buckets):
    (tmp_path / "dumps").mkdir()
    write_dump(tmp_path / "dumps" / "RS_a.zst", dump_bytes())
    write_dump(tmp_path / "dumps" / "RS_b.xz", dump_bytes())
    stats = run_stage(HARVEST, [str(tmp_path / "dumps")], str(tmp_path / "harvest"), HarvestConfig(buckets=buckets))
    urls = pq.read_table(tmp_path / "harvest")
    assert urls.num_rows == 2 == stats.output
    assert sorted(urls.column("url").to_pylist()) == [
        "http://example.com/story",
        "http://news.example.org/x?id=1&page=2",
    ]
    assert stats.input == 2 * (len(RECORDS) + 2)
    assert stats.dropped["duplicate_url"] == 2 + 2  # a2 in each file, and each URL's copy in the other file
    assert (tmp_path / "harvest" / "_stats.json").exists() and not (tmp_path / "harvest" / "_scratch").exists()


def test_real_pushshift_dump(shared_data):
    for name in ["RS_2005-06.zst", "RS_v2_2005-06.xz"]:
        candidates, stats = harvest_file(shared_data / "reddit" / name, HarvestConfig())
        urls = merge_candidates(candidates, HarvestConfig(), stats)
        stats.check()
        assert stats.input == 103 and stats.dropped["malformed"] == 0
        assert 50 < urls.num_rows < 103
        assert all(u.startswith("http") for u in urls.column("url").to_pylist())


def test_batch_classification_equals_classifying_each_record():
    """`BatchFilter.batch` (Arrow kernels) gives what `SubmissionFilter.classify` gives one record at a
    time, on every tricky URL with odd scores, dates, flags and subreddits, under two configurations (the
    second with the url_sum rule, which classifies every URL whatever its score)."""
    import random
    from collections import Counter

    import pyarrow as pa

    from crawler.harvest import CANDIDATE, BatchFilter, Submission, SubmissionFilter, created_seconds, score_of

    rng = random.Random(3)
    urls = (
        tricky_urls() + canonical_looking_urls() + [None, "", "http://i.imgur.com/a.gif", "https://en.wikipedia.org/x"]
    )
    records = [
        Submission(
            id=f"r{i}",
            url=url,
            title=rng.choice(["t", None, "é"]),
            score=rng.choice([1, None, 2.5, 3.0, 10**20, -(2**63), 1e300, float("nan")]),
            created_utc=rng.choice([1500000000 + i, 1.5e9 + 0.5, "1500000300", "x", None, 10**30, -(2**63), 1e30]),
            is_self=rng.choice([None, False, True, False, False]),
            over_18=rng.choice([None, False, True, False, False]),
            subreddit=rng.choice(["news", "Pics", "İstanbul", None, ""]),
        )
        for i, url in enumerate(urls * 2)
    ]
    configs = [
        HarvestConfig(),
        HarvestConfig(
            start_utc=1500000100, end_utc=1500009000, blocked_subreddits=["pics"], drop_nsfw=False, karma_rule="url_sum"
        ),
    ]
    for config in configs:
        one, batch = SubmissionFilter(config), BatchFilter(config)
        expected_drops, rows = Counter(), []
        for sub in records:
            reason, url, domain = one.classify(sub)
            if reason != "candidate":
                expected_drops[reason] += 1
            else:
                rows.append(
                    (
                        url,
                        domain,
                        sub.id,
                        sub.subreddit,
                        score_of(sub.score),
                        sub.title,
                        created_seconds(sub.created_utc),
                    )
                )
        expected = pa.Table.from_pylist([dict(zip(CANDIDATE.names, row)) for row in rows], schema=CANDIDATE)
        drops = Counter()
        got = pa.concat_tables(
            [t for t in (batch.batch(records[:5000], drops), batch.batch(records[5000:], drops)) if t is not None]
        )
        assert drops == expected_drops
        assert got.equals(expected)


def test_read_tasks_import_no_ray_data():
    """A read task's worker holds a 2 GiB zstd window; the runner's Ray Data and pandas would add
    ~50 MB to each, so the harvest module (unpickled by the worker) must not import the runner."""
    import subprocess
    import sys

    code = "import sys, crawler.harvest, webtext.core.stage; print(sorted(m for m in ('ray.data', 'pandas') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
