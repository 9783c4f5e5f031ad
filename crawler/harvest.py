"""Harvest: Reddit submission dumps in, one row per qualifying outbound URL out.

Reads Pushshift/Arctic-Shift NDJSON (.zst with a 2**31 window, .xz, .bz2, .gz, plain) as a stream,
decodes each line into a typed record (msgspec), classifies it under exactly one reason, and merges
submissions of the same normalized URL into one row that keeps all their provenance.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
from collections import Counter
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import urlsplit

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from crawler.urls import InvalidURL, host_in, normalize_url, registered_domain
from webtext.config import HarvestConfig
from webtext.schemas import URLS
from webtext.stats import StageStats

log = logging.getLogger(__name__)

DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", ".jsonl", ".json", ".ndjson")
ZSTD_MAX_WINDOW = 2**31  # real Pushshift dumps are packed with --long=31

CANDIDATE = pa.schema(
    [
        ("url", pa.string()),
        ("domain", pa.string()),
        ("reddit_id", pa.string()),
        ("subreddit", pa.string()),
        ("score", pa.int64()),
        ("title", pa.string()),
        ("created_utc", pa.int64()),
    ]
)


class Submission(msgspec.Struct):
    """The fields harvest needs; every era's dumps have a subset of them, in varying types."""

    id: str | None = None
    url: str | None = None
    score: int | float | None = None
    is_self: bool | None = None
    over_18: bool | None = None
    subreddit: str | None = None
    title: str | None = None
    created_utc: int | float | str | None = None


class DumpError(OSError):
    """A dump file that cannot be opened or decompressed at all."""


def dump_files(inputs: list[Path]) -> list[Path]:
    """Expand folders to the dump files inside them, sorted, so a harvest is reproducible."""
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(DUMP_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise DumpError(f"{path}: no such dump file or folder")
    if not files:
        raise DumpError(f"no dump files in {', '.join(map(str, inputs))}")
    return files


def open_dump(path: Path) -> IO[bytes]:
    """A binary stream of the decompressed NDJSON; constant memory whatever the file size."""
    name = path.name
    if name.endswith(".zst"):
        reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(open(path, "rb"))
        return io.BufferedReader(reader, buffer_size=1 << 20)
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_submissions(path: Path, stats: StageStats) -> Iterator[tuple[int, Submission]]:
    """Yield (line number, record); malformed lines are counted and logged with file and line."""
    decoder = msgspec.json.Decoder(Submission)
    try:
        with open_dump(path) as stream:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                stats.input += 1
                try:
                    yield lineno, decoder.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    stats.dropped["malformed"] += 1
                    log.warning("%s:%d: malformed submission: %s", path, lineno, exc)
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise DumpError(f"{path}: cannot read dump: {exc}") from exc


def created_seconds(value: int | float | str | None) -> int | None:
    """created_utc was an int, a float and a numeric string in different eras."""
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class SubmissionFilter:
    """Classifies a submission: a drop reason, or the normalized URL and domain it contributes."""

    def __init__(self, config: HarvestConfig):
        self.config = config
        self.reddit = frozenset(config.reddit_domains)
        self.media = frozenset(config.media_domains)
        self.wikipedia = frozenset(config.wikipedia_domains)
        self.blocked = frozenset(config.blocked_domains)
        self.subreddits = frozenset(s.lower() for s in config.blocked_subreddits)
        self.extensions = tuple(config.file_extensions)

    def classify(self, sub: Submission) -> tuple[str, str | None, str | None]:
        """(reason, url, domain); reason is "candidate" when the submission contributes its URL."""
        c = self.config
        if sub.is_self:
            return "self_post", None, None
        if not sub.url:
            return "no_url", None, None
        if c.drop_nsfw and sub.over_18:
            return "nsfw", None, None
        created = created_seconds(sub.created_utc)
        if (c.start_utc is not None or c.end_utc is not None) and created is None:
            return "no_date", None, None
        if c.start_utc is not None and created < c.start_utc or c.end_utc is not None and created >= c.end_utc:
            return "out_of_window", None, None
        if sub.subreddit and sub.subreddit.lower() in self.subreddits:
            return "blocked_subreddit", None, None
        try:
            url = normalize_url(sub.url, c.tracking_params)
        except InvalidURL:
            return "invalid_url", None, None
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host_in(host, self.reddit):
            return "reddit_link", None, None
        if host_in(host, self.wikipedia):
            return "wikipedia", None, None
        if host_in(host, self.media):
            return "media_domain", None, None
        if host_in(host, self.blocked):
            return "blocked_domain", None, None
        if parts.path.lower().endswith(self.extensions):
            return "file_extension", None, None
        return "candidate", url, registered_domain(host)


def harvest_file(path: Path, config: HarvestConfig) -> tuple[pa.Table, StageStats]:
    """Candidate submissions of one dump file, with the counts of those it dropped."""
    stats = StageStats("harvest", "submissions")
    keep = SubmissionFilter(config)
    columns: dict[str, list] = {name: [] for name in CANDIDATE.names}
    for _, sub in read_submissions(Path(path), stats):
        reason, url, domain = keep.classify(sub)
        if reason != "candidate":
            stats.dropped[reason] += 1
            continue
        columns["url"].append(url)
        columns["domain"].append(domain)
        columns["reddit_id"].append(sub.id)
        columns["subreddit"].append(sub.subreddit)
        columns["score"].append(int(sub.score or 0))
        columns["title"].append(sub.title)
        columns["created_utc"].append(created_seconds(sub.created_utc))
    return pa.table(columns, schema=CANDIDATE), stats


def merge_candidates(candidates: pa.Table, config: HarvestConfig, stats: StageStats) -> pa.Table:
    """One row per URL with all its submissions' provenance; URLs below the karma rule are dropped."""
    grouped = candidates.group_by("url", use_threads=False).aggregate(
        [
            ("domain", "min"),
            ("reddit_id", "list"),
            ("subreddit", "list"),
            ("score", "list"),
            ("title", "list"),
            ("created_utc", "min"),
            ("score", "max"),
            ("score", "sum"),
            ("url", "count"),
        ]
    )
    karma = grouped["score_max"] if config.karma_rule == "submission" else grouped["score_sum"]
    qualifies = pc.greater_equal(karma, config.min_karma)
    submissions = grouped["url_count"]
    stats.dropped["low_karma"] += pc.sum(pc.filter(submissions, pc.invert(qualifies))).as_py() or 0
    kept = grouped.filter(qualifies)
    kept_karma = karma.filter(qualifies)
    stats.dropped["duplicate_url"] += (pc.sum(kept["url_count"]).as_py() or 0) - kept.num_rows
    table = pa.table(
        {
            "url": kept["url"],
            "domain": kept["domain_min"],
            "reddit_ids": kept["reddit_id_list"],
            "subreddits": kept["subreddit_list"],
            "scores": kept["score_list"],
            "titles": kept["title_list"],
            "created_utc": kept["created_utc_min"],
            "karma": kept_karma,
        },
        schema=URLS,
    )
    stats.output = table.num_rows
    return table.sort_by("url")
