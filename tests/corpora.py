"""Test data builders shared by several test modules: Reddit dumps, documents, URLs at the edges of
normalization. (Fixtures live in conftest.py; servers in hostile_server.py and simweb.py.)"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

# -- Reddit dumps ----------------------------------------------------------------------------------


def record(id, url, score, **extra):
    base = {
        "id": id,
        "url": url,
        "score": score,
        "subreddit": "news",
        "title": f"title {id}",
        "created_utc": 1119845000,
    }
    base.update(extra)
    return base


RECORDS = [
    record("a1", "http://example.com/story", 5),
    record("a2", "http://EXAMPLE.com:80/story?utm_source=x#top", 3, created_utc="1119800000"),  # same URL, earlier
    record("a3", "http://example.com/low", 2, created_utc=1119845000.5),
    record("a4", "https://www.reddit.com/r/news/comments/a4/title/", 10, is_self=True),
    record("a5", "http://news.example.org/x?id=1&amp;page=2", 4, over_18=False),
    record("a6", "http://nsfw.example.net/x", 50, over_18=True),
    record("a7", "https://i.imgur.com/abc.jpg", 50),
    record("a8", "https://en.wikipedia.org/wiki/Reddit", 50),
    record("a9", "http://example.com/file.pdf", 50),
    record("a10", "https://reddit.com/r/pics", 50, is_self=False),
    record("a11", "ftp://example.com/x", 50),
    record("a12", None, 50),
    record("a13", "http://example.com/story#comments", 1),  # same URL, below min_karma: not its provenance
]


def dump_bytes() -> bytes:
    lines = [json.dumps(r) for r in RECORDS] + ['{"id": "broken", "url": ', "[1, 2, 3]"]
    return ("\n".join(lines) + "\n").encode()


def write_dump(path, data: bytes):
    if path.name.endswith(".zst"):
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True)
        path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(data))
    elif path.name.endswith(".xz"):
        path.write_bytes(lzma.compress(data))
    elif path.name.endswith(".bz2"):
        path.write_bytes(bz2.compress(data))
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


# -- documents (the extract stage's columns) -------------------------------------------------------


WORDS = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()
DOMAINS = ["example.com", "news.org", "blog.net", "wiki.io", "paper.edu"]
SUBREDDITS = ["science", "news", "worldnews", "programming"]


def documents(n: int, seed: int = 0, start: int = 0) -> pa.Table:
    """Documents with the extract stage's columns; ids as the pipeline makes them (sha256 of the URL)."""
    rng = random.Random(seed)
    rows = []
    for i in range(start, start + n):
        url = f"https://{DOMAINS[i % len(DOMAINS)]}/article/{i}"
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 400))]
        rows.append(
            {
                "id": hashlib.sha256(url.encode()).hexdigest()[:32],
                "url": url,
                "domain": DOMAINS[i % len(DOMAINS)],
                "subreddits": [SUBREDDITS[i % len(SUBREDDITS)]],
                "created_utc": 1117584000 + i * 86400 * 3,
                "text": " ".join(words),
                "title": f"title {i}",
                "n_words": len(words),
                "n_tokens": len(words) + 1,
            }
        )
    return pa.Table.from_pylist(rows)


def write_docs(folder: Path, files: int, rows: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        pq.write_table(documents(rows, seed + f, start=f * rows), folder / f"part-{f:05d}.parquet", row_group_size=37)
    return folder


# -- URLs ------------------------------------------------------------------------------------------


def tricky_urls() -> list[str]:
    """Every combination of the parts where normalization has work to do (case, ports, IDNA, escapes,
    dot segments, empty and repeated parameters, tracking parameters, fragments, HTML escapes)."""
    schemes = ["http", "https", "HTTP", "hTTps", "ftp"]
    hosts = [
        "example.com",
        "Example.COM",
        "www.bbc.co.uk",
        "a-b.example.org",
        "-bad.example.com",
        "bad-.example.com",
        "xn--bcher-kva.example",
        "bücher.example",
        "EXAMPLE.com.",
        "ex_ample.com",
        "ab--cd.example",
        "127.0.0.1",
        "[::1]",
        "user:pw@example.com",
        "a" * 64 + ".com",
        "xn--ls8h.la",
        "ＥＸＡＭＰＬＥ.com",
        "example.com..",
        "1.2.3",
    ]
    ports = ["", ":80", ":443", ":8080", ":080", ":99999", ":"]
    paths = [
        "",
        "/",
        "/a/b",
        "/a/./b",
        "/a/../b",
        "//a",
        "/a//b/",
        "/%7Euser",
        "/%7euser/x",
        "/a%2Fb",
        "/caf%C3%A9",
        "/café",
        "/a b",
        "/a+b",
        "/(x)",
        "/a;p=1",
        "/a:b@c",
        "/~x",
        "/%41",
        "/a/.",
        "/a/..",
        "/.well-known/x",
        "/a%20b",
        "/[x]",
        "/x.PDF",
        '/a"b',
        "/a|b",
        "/%",
    ]
    queries = [
        "",
        "?",
        "?a=1",
        "?a=1&b=2",
        "?b=2&a=1",
        "?a=1&a=2",
        "?a",
        "?a=",
        "?&a=1",
        "?a=1&&b=2",
        "?a=1&",
        "?a=b=c",
        "?utm_source=x",
        "?a=1&utm_source=x&fbclid=1",
        "?q=a+b",
        "?q=a%20b",
        "?q=%2B",
        "?q=é",
        "?q=a/b?c",
        "?a=1&amp;b=2",
        "?a=1&amp;amp;utm_medium=y",
        "?x=[1]",
        "?UTM_SOURCE=x",
        "?_escaped_fragment_=x",
    ]
    fragments = ["", "#", "#top", "#!/page", "#a#b", "#%20"]
    out = []
    for i, scheme in enumerate(schemes):
        for j, host in enumerate(hosts):
            for k, port in enumerate(ports):
                for m, path in enumerate(paths):
                    # every (scheme, host, port, path) with a rotating choice of query and fragment
                    query = queries[(i + j + k + m) % len(queries)]
                    fragment = fragments[(j * 7 + k * 3 + m) % len(fragments)]
                    out.append(f"{scheme}://{host}{port}{path}{query}{fragment}")
    out += [f"http://example.com/p{q}{f}" for q in queries for f in fragments]
    out += [" http://example.com/x ", "http://example.com\t/x", "http:///example.com", "http:example.com", "http://"]
    return out


def canonical_looking_urls() -> list[str]:
    """URLs near the edge of what `canonical_urls` accepts: each is one change away from canonical."""
    bases = ["http://example.com/a", "https://www.bbc.co.uk/news/x-1", "http://a-b.example.org/", "http://127.0.0.1/x"]
    tails = [
        "",
        "?",
        "?a=1",
        "?a",
        "?=1",
        "?a=1=2",
        "?a=1&b=2",
        "?utm_source=x",
        "?utm_sourcex=1",
        "?fbclid",
        "?x=y?z",
        "#f",
        "/",
        "//",
        "/./x",
        "/.x",
        "/x/..",
        "&amp;",
        "&amp;amp;",
        "--",
        ".PDF",
        ".pdf",
        ".pdf?x=1",
        "?x=.pdf",
        ".Jpg",
        "%20",
        ";p",
        "é",
        " ",
        "\t",
    ]
    hosts = [
        "EXAMPLE.com",
        "ex--ample.com",
        "xn--bcher-kva.example",
        "a" * 63 + ".com",
        "a" * 64 + ".com",
        ".".join(["a" * 60] * 5),
        "-a.com",
        "a_b.com",
        "example.com:80",
        "example.com:8080",
        "example.com.",
    ]
    out = [b + t for b in bases for t in tails]
    out += [f"{s}://{h}/x{t}" for s in ("http", "https", "HTTP") for h in hosts for t in ("", "?q=1", ".gif")]
    return out + [u.upper() for u in out[:40]]
