"""A Pushshift-format submissions dump for the demo, in the shapes of several eras of real dumps."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import zstandard

BLOCKED_DOMAIN = "link-farm.example"  # the demo config blocks it: a stand-in for a spam domain
SUBREDDITS = ["news", "worldnews", "science", "technology", "politics", "sports", "books", "programming"]


def compress_long_window(data: bytes) -> bytes:
    """zstd with a 2**31 window and long-distance matching, as modern dumps are packed (`--long=31`)."""
    params = zstandard.ZstdCompressionParameters.from_level(10, window_log=31, enable_ldm=True)
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


class SubmissionMaker:
    """Submissions whose field types and presence vary the way they did across Reddit's eras."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.count = 0

    def __call__(self, url: str, score: int, **fields) -> dict:
        self.count += 1
        created = 1_119_800_000 + self.count * 97
        record = {
            "id": f"t{self.count:05x}",
            "url": url,
            "score": score,
            "subreddit": self.rng.choice(SUBREDDITS),
            "title": f"Submission {self.count}",
            "author": f"user{self.rng.randint(1, 500)}",
            "num_comments": self.rng.randint(0, 300),
            "permalink": f"/r/x/comments/t{self.count:05x}/",
        }
        era = self.count % 3
        record["created_utc"] = [created, str(created), float(created) + 0.5][era]  # 2006 int, 2012 str, 2019 float
        if era != 0:  # the oldest records lack these fields
            record.update(is_self=False, over_18=False, domain=url.split("/")[2] if "://" in url else "self.x")
        record.update(fields)
        return record


def write_dump(path: Path, links: list[tuple[str, str]], seed: int = 0) -> dict[str, int]:
    """Write the submissions for `links` plus planted cases every harvest rule must catch.

    Returns how many records of each planted kind were written.
    """
    rng = random.Random(seed)
    make = SubmissionMaker(seed)
    records: list[dict] = []
    planted: Counter = Counter()

    def add(kind: str, record: dict):
        records.append(record)
        planted[kind] += 1

    for i, (url, _kind) in enumerate(links):
        add("link", make(url, rng.randint(3, 500)))
        if i % 10 == 0:  # posted again: &amp;-escaped with tracking parameters and a fragment
            add("repost", make(url + "?utm_source=reddit&amp;utm_medium=social#comments", rng.randint(0, 50)))
    for i in range(5):
        add("low_karma", make(f"{links[0][0].rsplit('/', 2)[0]}/low-karma/{i}", rng.randint(0, 2)))
        add("self_post", make(f"https://www.reddit.com/r/AskReddit/comments/s{i}/question/", 20, is_self=True))
        add("nsfw", make(f"http://nsfw-example.com/gallery/{i}", 40, over_18=True))
        add("media", make(f"https://i.imgur.com/pic{i}.jpg", 90))
        add("media", make(f"https://www.youtube.com/watch?v=vid{i}", 90))
        add("file_link", make(f"http://files.example.com/photo{i}.png", 30))
        add("wikipedia", make(f"https://en.wikipedia.org/wiki/Article_{i}", 60))
        add("blocked_domain", make(f"http://{BLOCKED_DOMAIN}/offer/{i}", 25))
        add("reddit_link", make(f"https://www.reddit.com/r/news/comments/x{i}/", 15, is_self=False))
    add("crosspost", make(links[0][0], 12, crosspost_parent="t3_abc"))
    rng.shuffle(records)
    lines = [json.dumps(r) for r in records]
    lines.insert(len(lines) // 2, '{"id": "truncated", "url": "http://exa')
    lines.insert(len(lines) // 3, '["not", "an", "object"]')
    planted["malformed"] += 2
    data = ("\n".join(lines) + "\n").encode()
    path = Path(path)
    path.write_bytes(compress_long_window(data) if path.suffix == ".zst" else data)
    return dict(planted)
