r"""Generate a Pushshift-like submissions dump: `.zst` with a 2**31 window (like the real dumps, which
are packed with --long=31), about 30% of records reposting an earlier URL.

    .venv/bin/python benchmarks/harvest_gen.py OUT.zst --records 1000000

Records carry the ~57 fields of the real dumps' records (the June 2005 dump as re-released, 2017-era
schema), with their nested flair, media and preview objects and `\/`-escaped slashes: ~1.7 kB of JSON
each (the real June 2005 records: median 1,417 bytes, mean 1,723; half the link posts here have a
preview). A mix of outbound links (some with tracking parameters, mixed-case hosts, default ports),
self posts with text, NSFW, media and reddit links. (Before 2026-11-25's fourth session the records
had 25 fields, ~900 bytes and no escapes: lighter to parse than real ones, which flattered the bare
loops the harvest is compared with.)
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
        is_self = url.startswith("https://www.reddit.com") and rng.random() < 0.5
        subreddit = rng.choice(["news", "worldnews", "science", "technology", "pics"])
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        yield {
            "archived": True,
            "author": f"user{rng.randint(0, 10**6)}",
            "author_flair_background_color": None,
            "author_flair_css_class": None,
            "author_flair_richtext": [],
            "author_flair_text": None,
            "author_flair_text_color": None,
            "author_flair_type": "text",
            "brand_safe": True,
            "can_gild": True,
            "contest_mode": False,
            "created_utc": 1500000000 + i,
            "distinguished": None,
            "domain": url.split("/")[2],
            "edited": False,
            "gilded": 0,
            "hidden": False,
            "hide_score": False,
            "id": f"{i:x}",
            "is_crosspostable": True,
            "is_reddit_media_domain": False,
            "is_self": is_self,
            "is_video": False,
            "link_flair_css_class": None,
            "link_flair_richtext": [],
            "link_flair_text": None,
            "link_flair_text_color": "dark",
            "link_flair_type": "text",
            "locked": False,
            "media": None,
            "media_embed": {},
            "no_follow": rng.random() < 0.5,
            "num_comments": rng.randint(0, 500),
            "num_crossposts": 0,
            "over_18": rng.random() < 0.03,
            "parent_whitelist_status": "all_ads",
            "permalink": f"/r/{subreddit}/comments/{i:x}/{title.replace(' ', '_')[:50]}/",
            **({} if is_self or rng.random() < 0.5 else {"post_hint": "link", "preview": preview(rng)}),
            "retrieved_on": 1500100000 + i,
            "rte_mode": "markdown",
            "score": int(rng.paretovariate(1.2)) - 1,
            "secure_media": None,
            "secure_media_embed": {},
            "selftext": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) if is_self else "",
            "send_replies": True,
            "spoiler": False,
            "stickied": False,
            "subreddit": subreddit,
            "subreddit_id": "t5_2qh3l",
            "subreddit_name_prefixed": f"r/{subreddit}",
            "subreddit_type": "public",
            "suggested_sort": None,
            "thumbnail": "self" if is_self else f"https://b.thumbs.redditmedia.com/{rng.getrandbits(128):032x}.jpg",
            "thumbnail_height": None if is_self else 78,
            "thumbnail_width": None if is_self else 140,
            "title": title,
            "url": url,
            "whitelist_status": "all_ads",
        }


def preview(rng: random.Random) -> dict:
    """A link post's preview: one image, its source and a few resolutions, as in the real records."""

    def image(width: int) -> dict:
        return {
            "height": width * 3 // 4,
            "url": f"https://i.redditmedia.com/{rng.getrandbits(170):043x}.jpg?s={rng.getrandbits(128):032x}",
            "width": width,
        }

    sizes = [108, 216, 320][: rng.randint(0, 3)]
    return {
        "enabled": False,
        "images": [
            {
                "id": f"{rng.getrandbits(170):043x}",
                "resolutions": [image(w) for w in sizes],
                "source": image(rng.choice([140, 800, 1200])),
                "variants": {},
            }
        ],
    }


def write(path: str, n: int, seed: int = 1) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True, threads=-1)
    with open(path, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as writer:
        for record in records(n, seed):
            writer.write(orjson.dumps(record).replace(b"/", b"\\/") + b"\n")  # the dumps escape every slash


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write(args.out, args.records, args.seed)
