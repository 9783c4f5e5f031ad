"""Generate a Pushshift-like submissions dump: `.zst` with a 2**31 window (like the real dumps, which
are packed with --long=31), about 30% of records reposting an earlier URL.

    .venv/bin/python benchmarks/harvest_gen.py OUT.zst --records 1000000

Records carry the ~25 fields of a 2017-era submission (about 900 bytes of JSON each), a mix of
outbound links (some with tracking parameters, mixed-case hosts, default ports), self posts, NSFW,
media and reddit links.
"""

from __future__ import annotations

import argparse
import random

import orjson
import zstandard

WORDS = "the of and to in reddit news city council library school market river storm study team".split()


def records(n: int, seed: int = 1):
    rng = random.Random(seed)
    domains = [f"{rng.choice(WORDS)}{i}.{rng.choice(['com', 'org', 'net', 'co.uk', 'io'])}" for i in range(20_000)]
    seen: list[str] = []
    for i in range(n):
        kind = rng.random()
        if seen and rng.random() < 0.30:
            url = rng.choice(seen)
        elif kind < 0.08:
            url = f"https://www.reddit.com/r/news/comments/{i:x}/title/"
        elif kind < 0.14:
            url = f"https://i.imgur.com/{i:x}.jpg"
        else:
            host = rng.choice(domains)
            host = ("www." if rng.random() < 0.3 else "") + (host.upper() if rng.random() < 0.05 else host)
            port = ":80" if rng.random() < 0.02 else ""
            path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            query = rng.choice(["", "", "", "?id=%d" % i, "?utm_source=reddit&id=%d" % i, "?p=1&amp;q=2"])
            url = f"http://{host}{port}/{path}-{i}{query}"
            seen.append(url)
            if len(seen) > 200_000:
                seen = seen[100_000:]
        yield {
            "archived": False, "author": f"user{rng.randint(0, 10**6)}", "author_flair_text": None,
            "brand_safe": True, "contest_mode": False, "created_utc": 1500000000 + i, "distinguished": None,
            "domain": url.split("/")[2], "edited": False, "gilded": 0, "hidden": False, "id": f"{i:x}",
            "is_self": url.startswith("https://www.reddit.com") and rng.random() < 0.5, "locked": False,
            "num_comments": rng.randint(0, 500), "over_18": rng.random() < 0.03, "permalink": f"/r/news/comments/{i:x}/title/",
            "retrieved_on": 1500100000 + i, "score": int(rng.paretovariate(1.2)) - 1, "selftext": "",
            "stickied": False, "subreddit": rng.choice(["news", "worldnews", "science", "technology", "pics"]),
            "subreddit_id": "t5_2qh3l", "thumbnail": "default",
            "title": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))), "url": url,
        }


def write(path: str, n: int, seed: int = 1) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True, threads=-1)
    with open(path, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as writer:
        for record in records(n, seed):
            writer.write(orjson.dumps(record) + b"\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write(args.out, args.records, args.seed)
