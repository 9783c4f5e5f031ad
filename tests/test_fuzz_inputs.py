"""Property-based tests (hypothesis): random bytes and random records to harvest, random HTML to
extract. Harvest counts every record (input == candidates + dropped) or stops with one clean line
naming the file; extract never raises and gives every row either a kept document or a drop reason.

Examples are derandomized so a failure reproduces on every run and machine.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleaning.extract import EXTRACT
from crawler.harvest import harvest_file
from webtext.core.config import ExtractConfig, HarvestConfig
from webtext.core.runner import InputError, conform_input

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# Numbers of any size: beyond int64, inf and nan (json.dumps writes `Infinity`/`NaN`, which are malformed JSON).
INTEGERS = st.integers() | st.sampled_from([2**63, -(2**63) - 1, 2**70])
FLOATS = st.floats() | st.sampled_from([1e30, -1e300, 9.3e18])


def harvest(data: bytes, suffix: str, on_truncated: str = "error") -> tuple[pa.Table, object] | InputError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"RS_fuzz{suffix}"
        path.write_bytes(data)
        try:
            return harvest_file(str(path), HarvestConfig(on_truncated=on_truncated))
        except InputError as exc:  # the one clean way to refuse a file
            message = str(exc)
            assert "\n" not in message.strip() and str(path) in message, message
            return exc


def counted(result) -> None:
    if isinstance(result, InputError):
        return
    table, stats = result
    assert stats.input == table.num_rows + sum(stats.dropped.values()), stats
    assert all(n >= 0 for n in stats.dropped.values())  # an empty dump under `warn` records truncated_dump: 0


@SETTINGS
@given(
    data=st.binary(max_size=4096),
    suffix=st.sampled_from([".jsonl", ".zst", ".gz", ".xz", ".bz2"]),
    on_truncated=st.sampled_from(["error", "warn"]),
)
def test_harvest_of_random_bytes_counts_or_refuses_cleanly(data, suffix, on_truncated):
    counted(harvest(data, suffix, on_truncated))


VALUE = st.one_of(
    st.none(),
    st.booleans(),
    INTEGERS,
    FLOATS,
    st.text(max_size=30),
    st.sampled_from(
        [
            "https://a.example/x",
            "http://b.example/y?utm_source=z",
            "ftp://c.example/",
            "//d.example",
            "https://imgur.com/a.jpg",
            "https://en.wikipedia.org/wiki/X",
            "nan",
            "inf",
            "-inf",
            "1e999",
            "1e23",
            "12abc",
            "",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
FIELDS = ["id", "url", "score", "is_self", "over_18", "subreddit", "title", "created_utc", "extra"]
RECORD = st.one_of(st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=len(FIELDS)), VALUE)


@SETTINGS
@given(records=st.lists(RECORD, max_size=40), compress=st.booleans(), cut=st.booleans())
def test_harvest_of_random_records_counts_every_record(records, compress, cut):
    text = "".join(json.dumps(r) + "\n" for r in records)
    data = text.encode()
    if cut and data:
        data = data[: len(data) // 2]
    if compress:
        data = zstandard.ZstdCompressor().compress(data)
    result = harvest(data, ".zst" if compress else ".jsonl", on_truncated="warn")
    counted(result)
    if not isinstance(result, InputError) and not cut:
        assert result[1].input == len(records)  # every line of a whole file is one counted record


@pytest.mark.parametrize(
    "record",
    [
        {"id": "a", "url": "https://a.example/x", "score": 5, "created_utc": "1e999"},
        {"id": "a", "url": "https://a.example/x", "score": 5, "created_utc": "1e23"},
        {"id": "a", "url": "https://a.example/x", "score": 1e30},
        {"id": "a", "url": "https://a.example/x", "score": 2**70},
    ],
    ids=["created_inf", "created_1e23", "score_1e30", "score_2^70"],
)
def test_harvest_counts_out_of_range_numbers(record):
    counted(harvest((json.dumps(record) + "\n").encode(), ".jsonl"))


# -- extract ----------------------------------------------------------------------------------------

TAGS = [
    "p",
    "div",
    "article",
    "main",
    "span",
    "h1",
    "script",
    "style",
    "table",
    "td",
    "li",
    "ul",
    "br",
    "a",
    "nav",
    "footer",
    "noscript",
    "iframe",
    "svg",
    "template",
    "!--",
    "![CDATA[",
    "?xml",
    "html",
    "body",
    "head",
]
WORDS = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "The quick brown fox jumps over the lazy dog again and again.",
        "&amp;&#0;&#x110000;&bogus;",
        "\x00",
        "\ufffd" * 5,
        "<" * 10,
        ">" * 10,
        "'\"",
        "\u202e\u200b",
        "<meta charset='utf-16'>",
        "<meta http-equiv='refresh' content='0'>",
    ]
)
FRAGMENT = st.one_of(
    WORDS,
    st.builds(lambda t, w: f"<{t}>{w}", st.sampled_from(TAGS), WORDS),
    st.builds(lambda t: f"</{t}>", st.sampled_from(TAGS)),
    st.builds(lambda t, n: f"<{t} " + "a=b " * n + ">", st.sampled_from(TAGS), st.integers(0, 50)),
)
HTML = st.one_of(
    st.lists(FRAGMENT, max_size=60).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
    st.binary(max_size=2000),
    st.lists(FRAGMENT, max_size=30).map(lambda parts: "".join(parts).encode("utf-16", "surrogatepass")),
)


@pytest.fixture(scope="module")
def extract_fn():
    return EXTRACT.setup(ExtractConfig(min_words=5))


@SETTINGS
@given(
    pages=st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["https://a.example/p", "not a url", "", "http://[::1"])),
            st.one_of(st.none(), HTML),
            st.one_of(st.none(), st.sampled_from(["text/html", "text/html; charset=klingon", "application/pdf", ""])),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_extract_of_random_html_never_raises_and_accounts_for_every_row(extract_fn, pages):
    batch = pa.table(
        {
            "url": pa.array([p[0] for p in pages], pa.string()),
            "html": pa.array([p[1] for p in pages], pa.binary()),
            "content_type": pa.array([p[2] for p in pages], pa.string()),
        }
    )
    # the runner's own conforming (absent optional columns get their defaults) before the batch fn
    out = extract_fn(conform_input(EXTRACT, batch))
    assert out.num_rows == batch.num_rows
    for row in out.to_pylist():
        if row["drop_reason"] is None:
            assert row["id"] and row["text"] and row["text"].strip(), row
        else:
            assert isinstance(row["drop_reason"], str) and row["drop_reason"]
