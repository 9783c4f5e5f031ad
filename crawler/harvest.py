"""Harvest: Reddit submission dumps in, one row per qualifying outbound URL out.

Reads Pushshift/Arctic-Shift NDJSON (.zst with a 2**31 window, .xz, .bz2, .gz, plain) as a stream,
decodes it a chunk of lines at a time into typed records (msgspec), classifies each under exactly one
reason (a chunk at once in Arrow kernels, `BatchFilter`; Python only once per host and per unusual
URL), and merges the submissions of each normalized URL into one row that keeps all their provenance.
Under the default karma rule ("submission") a submission below min_karma can never qualify its URL, so
it is dropped as `low_karma` before any URL work: most submissions, on Reddit (and in the benchmarks).
Each task keeps examples of what it drops, per reason (`DropExamples`: the same rows whatever the
split, found by a hash of the ids computed over a whole batch; only rows that can be kept reach the
sampler's per-row Python).

At scale the work is split in two steps of the stage: `read`, one task per dump file, or per byte
range of a large plain NDJSON file, each writing its candidates into K hash buckets by URL on storage;
`merge`, one task per bucket, grouping its bucket in bounded memory and writing its part of the URL
dataset. The driver only sees counts; a run killed in the merge keeps what was read.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import logging
import lzma
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from crawler.buckets import bucket_of, by_bucket
from crawler.urls import InvalidURL, UrlNormalizer, ascii_literal, canonical_urls, registered_domain, spread
from webtext.core import storage
from webtext.core.config import HarvestConfig
from webtext.core.failures import DropSampler, DropSink
from webtext.core.schemas import URLS
from webtext.core.stage import DROP_REASON, InputError, Resources, Stage, Step, StepContext
from webtext.core.stats import StageStats

log = logging.getLogger(__name__)

DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", ".jsonl", ".json", ".ndjson")
PLAIN_SUFFIXES = (".jsonl", ".json", ".ndjson")
ZSTD_MAX_WINDOW = 2**31  # real Pushshift dumps are packed with --long=31
READ_BYTES = 1 << 20  # compressed bytes per read
# Candidates buffered by a task before they go to their bucket files (a run each): 50k rows is ~250k
# real-sized records under the submission karma rule; more cost peak memory and saved no CPU
# (BENCHMARKS.md, harvest).
FLUSH_ROWS = 50_000
# Records classified at once: the Arrow kernels' cost per call is paid per batch, and a 1 MB compressed
# read holds 6k-18k records depending on the dump's compression, so batches span several reads (the
# records are small structs).
CLASSIFY_ROWS = 32_768
TRUNCATED = "truncated_dump"

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


class Submission(msgspec.Struct, gc=False):
    """The fields harvest needs; every era's dumps have a subset of them, in varying types.

    gc=False: the fields hold no references to containers, so the collector can skip the records.
    """

    id: str | None = None
    url: str | None = None
    score: int | float | None = None
    is_self: bool | None = None
    over_18: bool | None = None
    subreddit: str | None = None
    title: str | None = None
    created_utc: int | float | str | None = None


class DumpError(InputError):
    """A dump file that cannot be read to its end: unreadable, corrupt, truncated or empty (exit 2)."""


def dump_files(inputs: list[str]) -> list[str]:
    """Expand folders to the dump files inside them, sorted, so a harvest is reproducible."""
    files: list[str] = []
    for location in map(storage.normalize, inputs):
        if storage.is_dir(location):
            files += storage.list_files(location, DUMP_SUFFIXES)
        elif storage.is_file(location):
            files.append(location)
        else:
            raise DumpError(f"{location}: no such dump file or folder")
    if not files:
        raise DumpError(f"no dump files ({', '.join(DUMP_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return files


# -- reading a dump ---------------------------------------------------------------------------------


class _Counting:
    """A raw stream that knows how many compressed bytes were read (for error offsets)."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.offset = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.offset += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seek(self, offset: int) -> None:
        self.raw.seek(offset)
        self.offset = offset

    def close(self) -> None:
        self.raw.close()


@functools.cache
def _decompressor() -> zstandard.ZstdDecompressor:
    """One zstd context per process, reused by every dump it reads. A context keeps its window buffer
    (up to 2 GiB) between streams: a fresh one has the kernel zero each page as it is first touched
    (~420k page faults, 1.0-1.4 s of system CPU per 1.7 GB decompressed, BENCHMARKS.md), a reused one
    does not. A read task runs alone in its worker, so no two streams share it at once."""
    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)


def _zstd_chunks(raw: _Counting) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame; a frame cut short raises instead of ending quietly
    (zstandard's stream reader reports EOF on a truncated frame)."""
    dctx = _decompressor()
    dobj, fed = dctx.decompressobj(), False
    while True:
        data = raw.read(READ_BYTES)
        if not data:
            break
        while data:
            out = dobj.decompress(data)  # ZstdError on a corrupt frame
            fed = True
            if out:
                yield out
            del out  # not held while the next ~16 MB chunk is decompressed
            if not dobj.eof:
                break
            data = dobj.unused_data  # the next frame starts here
            dobj, fed = dctx.decompressobj(), False
    if fed and not dobj.eof:
        raise EOFError(f"zstd frame ends early at compressed byte {raw.offset}")


def _stream_chunks(opener, raw: _Counting) -> Iterator[bytes]:
    with opener(raw) as stream:
        while chunk := stream.read(READ_BYTES):
            yield chunk


def decompressed_chunks(location: str, raw: _Counting) -> Iterator[bytes]:
    """Decompressed bytes of a dump in chunks; EOFError when the compressed stream ends early."""
    if location.endswith(".zst"):
        return _zstd_chunks(raw)
    if location.endswith(".xz"):
        return _stream_chunks(lambda f: lzma.open(f, "rb"), raw)
    if location.endswith(".bz2"):
        return _stream_chunks(lambda f: bz2.open(f, "rb"), raw)
    if location.endswith(".gz"):
        return _stream_chunks(lambda f: gzip.open(f, "rb"), raw)
    return iter(lambda: raw.read(READ_BYTES), b"")


@dataclass(frozen=True)
class Slice:
    """The part of a dump one task reads: a whole file, or lines starting in [start, end) of a plain one."""

    location: str
    start: int = 0
    end: int | None = None

    def where(self, line: int) -> str:
        return (
            f"{self.location}:{line}"
            if self.start == 0
            else f"{self.location}:{line} of the range from byte {self.start}"
        )


def _plain_range(raw: _Counting, piece: Slice) -> Iterator[bytes]:
    """Bytes of the lines that start in [start, end): the line straddling `start` belongs to the
    previous range, the one straddling `end` is finished here."""
    pos, data = 0, b""
    raw.seek(max(0, piece.start - 1))
    if piece.start:
        pos = piece.start - 1
        while True:
            block = raw.read(65536)
            if not block:
                return
            newline = block.find(b"\n")
            if newline >= 0:
                pos, data = pos + newline + 1, block[newline + 1 :]
                break
            pos += len(block)
        if pos >= piece.end:
            return
    while True:
        limit = piece.end - 1 - pos  # index in `data` of the range's last byte (< 0: past it)
        if limit < len(data):
            newline = data.find(b"\n", max(0, limit))
            if newline >= 0:
                yield data[: newline + 1]
                return
        yield data
        pos += len(data)
        data = raw.read(READ_BYTES)
        if not data:
            return


def _open(piece: Slice) -> _Counting:
    """The slice's file as a counted raw stream (random access for a byte range, else a stream)."""
    try:
        handle = (
            storage.open_input(piece.location) if piece.end is not None else storage.open_input_stream(piece.location)
        )
    except OSError as exc:
        raise DumpError(f"{piece.location}: cannot open dump: {exc}") from None
    return _Counting(handle)


def _whole_lines(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, memoryview | None]]:
    """Each chunk as (the line that the previous chunks left unfinished, completed; the chunk's whole
    lines after it, in place), and last (the dump's final line if it has no newline, None). Only the
    line cut between two chunks is copied; the consumer drops what it got before asking for more, so
    that no chunk is held while the next one is decompressed."""
    tail = b""
    for chunk in chunks:
        start = 0
        if tail:
            start = chunk.find(b"\n") + 1
            if not start:
                tail += chunk
                continue
            tail += chunk[:start]
        cut = chunk.rfind(b"\n") + 1
        lines, joined, tail = memoryview(chunk)[start:cut], tail, chunk[cut:]
        del chunk
        yield joined, lines
        del lines, joined
    if tail.strip():
        yield tail, None


class _LineDecoder:
    """Lines to records, counting them (`stats.input`) and the lines read (for messages); a malformed
    line is counted, logged with its file and line, and kept as an example of `malformed`."""

    def __init__(self, piece: Slice, stats: StageStats, examples: DropExamples | None):
        self.decoder = msgspec.json.Decoder(Submission)
        self.piece, self.stats, self.examples = piece, stats, examples
        self.line = 0  # lines read

    def chunk(self, joined: bytes, lines: memoryview) -> list[Submission]:
        """The completed line cut between chunks, then a chunk's whole lines."""
        records = self.block(joined) if joined else []
        self.line += 1 if joined else 0
        if len(lines):
            records += self.block(lines)
            self.line += _newlines(lines, 0, len(lines))
        return records

    def last(self, line: bytes) -> list[Submission]:
        """The dump's final line, without a newline: in a plain dump, a record cut short is a truncated dump."""
        try:
            record = self.decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if self.piece.location.endswith(PLAIN_SUFFIXES):
                raise EOFError("the last line ends without a newline in the middle of a record") from None
            records = self.block(line)
        else:
            self.stats.input += 1
            records = [record]
        self.line += 1
        return records

    def block(self, data: bytes | memoryview) -> list[Submission]:
        """All lines of a block at once (msgspec's NDJSON decoder); line by line when one is malformed."""
        try:
            records = self.decoder.decode_lines(data)
            self.stats.input += len(records)
            return records
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        records = []
        for number, text in enumerate(bytes(data).split(b"\n"), self.line + 1):
            if not text.strip():
                continue
            self.stats.input += 1
            try:
                records.append(self.decoder.decode(text))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.stats.dropped["malformed"] += 1
                log.warning("%s: malformed submission: %s", self.piece.where(number), exc)
                if self.examples:
                    line = text.decode(errors="replace")
                    self.examples.add_line("malformed", f"{self.piece.where(number)}: {exc}\n{line}")
        return records


def read_submissions(
    piece: Slice, config: HarvestConfig, stats: StageStats, examples: DropExamples | None = None
) -> Iterator[list[Submission]]:
    """The records of a dump slice, a list per decompressed chunk; malformed lines are counted and logged.

    A dump that ends early or has a corrupt frame raises DumpError naming the offset and line reached,
    unless `on_truncated: warn`, which counts the lost tail as `truncated_dump` and logs it.
    """
    location = piece.location
    lines = _LineDecoder(piece, stats, examples)
    raw = _open(piece)
    try:
        chunks = _plain_range(raw, piece) if piece.end is not None else decompressed_chunks(location, raw)
        for joined, whole in _whole_lines(chunks):
            records = lines.chunk(joined, whole) if whole is not None else lines.last(joined)
            del joined, whole  # not held while the next chunk is decompressed
            yield records
    except EOFError as exc:
        message = f"{location}: dump ends early (line {lines.line + 1} reached, compressed byte {raw.offset}): {exc}"
        _truncated(message, config, stats, examples)
    except (OSError, lzma.LZMAError, zstandard.ZstdError) as exc:
        message = f"{location}: corrupt dump (line {lines.line + 1} reached, compressed byte {raw.offset}): {exc}"
        _truncated(message, config, stats, examples)
    finally:
        raw.close()
    if lines.line == 0 and piece.start == 0 and stats.input == 0:
        _truncated(f"{location}: empty dump (no records)", config, stats, examples, lost=0)


def _newlines(data: bytes | memoryview, start: int, end: int) -> int:
    """`data.count(b"\n", start, end)` in numpy, twice as fast (0.5 s per 1M real-sized records with
    `count`); in 4 MiB windows, so the comparison's temporary stays small."""
    view = np.frombuffer(data, np.uint8)
    return sum(int(np.count_nonzero(view[i : min(end, i + (1 << 22))] == 10)) for i in range(start, end, 1 << 22))


def _truncated(
    message: str, config: HarvestConfig, stats: StageStats, examples: DropExamples | None, lost: int = 1
) -> None:
    if config.on_truncated == "error":
        raise DumpError(message + " (set harvest.on_truncated: warn to keep what was read)")
    log.warning("%s; kept what was read (on_truncated: warn)", message)
    stats.input += lost
    stats.dropped[TRUNCATED] += lost
    if examples and lost:
        examples.add_line(TRUNCATED, message)


# -- classifying a submission -----------------------------------------------------------------------


INT64_MAX = 2**63 - 1


def created_seconds(value: int | float | str | None) -> int | None:
    """created_utc was an int, a float and a numeric string in different eras; a value beyond int64
    (or inf, nan) is no date."""
    if value is None or type(value) is int and -INT64_MAX <= value <= INT64_MAX:
        return value
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return int(number) if abs(number) < 9.2e18 else None  # False for inf and nan too


def score_of(value: int | float | None) -> int:
    """A submission's score as int64: none is 0, nan is 0, beyond int64 is clamped."""
    if type(value) is int and -INT64_MAX <= value <= INT64_MAX:
        return value
    if value is None or value != value:
        return 0
    return int(max(-9.2e18, min(9.2e18, value)))


REASON_ORDER = ("reddit_link", "wikipedia", "media_domain", "blocked_domain")  # host list checks, in order


class SubmissionFilter:
    """Classifies a submission: a drop reason, or the normalized URL and domain it contributes."""

    def __init__(self, config: HarvestConfig):
        self.config = config
        self.subreddits = frozenset(s.lower() for s in config.blocked_subreddits)
        self.extensions = tuple(config.file_extensions)
        # domain -> why its hosts are dropped (the first reason of REASON_ORDER when lists overlap)
        self.domain_reasons: dict[str, str] = {}
        for reason, domains in zip(
            REASON_ORDER,
            (config.reddit_domains, config.wikipedia_domains, config.media_domains, config.blocked_domains),
        ):
            for domain in domains:
                self.domain_reasons.setdefault(domain, reason)
        self.hosts: dict[str, tuple[str | None, str]] = {}  # host -> (drop reason, registered domain)
        self.urls: dict[str, tuple[str, str | None, str | None]] = {}  # raw URL -> its classification
        self.normalizer = UrlNormalizer(config.tracking_params)  # uncached `parts`: the URL cache is `urls`

    def url_class(self, raw: str) -> tuple[str, str | None, str | None]:
        """The part of `classify` that depends on the URL alone, cached (URLs repeat)."""
        try:
            url, host, path = self.normalizer.parts(raw)
        except InvalidURL:
            known = ("invalid_url", None, None)
        else:
            reason, domain = self.host_class(host)
            if reason:
                known = (reason, None, None)
            elif path.lower().endswith(self.extensions):
                known = ("file_extension", None, None)
            else:
                known = ("candidate", url, domain)
        if len(self.urls) > 1 << 18:
            self.urls.clear()
        self.urls[raw] = known
        return known

    def host_class(self, host: str) -> tuple[str | None, str]:
        known = self.hosts.get(host)
        if known is None:
            labels = host.split(".")
            matches = [self.domain_reasons.get(".".join(labels[i:])) for i in range(len(labels))]
            reason = min((m for m in matches if m), key=REASON_ORDER.index, default=None)
            known = (reason, registered_domain(host))
            if len(self.hosts) > 1 << 20:
                self.hosts.clear()
            self.hosts[host] = known
        return known

    def classify(self, sub: Submission) -> tuple[str, str | None, str | None]:
        """(reason, url, domain); reason is "candidate" when the submission contributes its URL."""
        c = self.config
        if sub.is_self:
            return "self_post", None, None
        if not sub.url:
            return "no_url", None, None
        if c.drop_nsfw and sub.over_18:
            return "nsfw", None, None
        if c.start_utc is not None or c.end_utc is not None:
            created = created_seconds(sub.created_utc)
            if created is None:
                return "no_date", None, None
            if c.start_utc is not None and created < c.start_utc or c.end_utc is not None and created >= c.end_utc:
                return "out_of_window", None, None
        if self.subreddits and sub.subreddit and sub.subreddit.lower() in self.subreddits:
            return "blocked_subreddit", None, None
        if c.karma_rule == "submission" and score_of(sub.score) < c.min_karma:
            return "low_karma", None, None
        known = self.urls.get(sub.url)
        if known is None:
            known = self.url_class(sub.url)
        return known


# -- one dump (or a slice of one) -> candidates in buckets ------------------------------------------


REASONS = (
    "candidate",
    "self_post",
    "no_url",
    "nsfw",
    "no_date",
    "out_of_window",
    "blocked_subreddit",
    "low_karma",
    "invalid_url",
    *REASON_ORDER,
    "file_extension",
)
CODE = {reason: code for code, reason in enumerate(REASONS)}
NULL_TYPE = type(None)


def _int64_column(values: list, exact: tuple, convert) -> pa.Array:
    """Arrow int64 of `[convert(v) for v in values]`, in one conversion when every value is an int or
    None inside (-INT64_MAX, INT64_MAX], where `convert` is the identity (or None -> `exact`'s default)."""
    if set(map(type, values)) <= exact:
        try:
            array = pa.array(values, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            pass
        else:
            if array.null_count == len(array) or pc.min(array).as_py() > -INT64_MAX - 1:
                return array
    return pa.array([convert(v) for v in values], pa.int64())


class BatchFilter(SubmissionFilter):
    """`SubmissionFilter.classify` over a batch of records at once: Arrow kernels for the fields and
    for each distinct URL of the batch (`canonical_urls`); Python once per host and per distinct URL that
    is not canonical already (cached across batches)."""

    def __init__(self, config: HarvestConfig):
        super().__init__(config)
        # `path.lower().endswith(extensions)` on canonical URLs (ASCII; the path is all before `?`): an
        # extension with upper-case or non-ASCII characters never matches a lower-cased ASCII path, one
        # with `/` could match across the host (then every URL takes the Python path), `?` never matches
        usable = [ext for ext in self.extensions if ext.isascii() and ext == ext.lower() and "?" not in ext]
        self.python_only = any("/" in ext for ext in usable)
        self.extension_pattern = (
            r"(?i)^[^?]*(?:" + "|".join(map(ascii_literal, usable)) + r")(?:\?|$)" if usable else None
        )

    def url_codes(self, raw: pa.Array) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """(reason code, normalized URL, domain) of each distinct raw URL."""
        fast, urls, hosts = canonical_urls(raw, self.normalizer.lookup)
        if self.python_only:
            fast[:] = False
        codes = np.full(len(raw), CODE["invalid_url"], np.int8)
        # each distinct host of the batch once through `host_class` (a dict lookup but for new hosts): a
        # set lookup kernel would hash every host seen so far again for each batch
        distinct = pc.dictionary_encode(hosts)
        known = [self._host_code(h) for h in distinct.dictionary.to_pylist()]
        where = distinct.indices
        domains = pa.array([k[1] for k in known], pa.string()).take(where)
        codes[fast] = np.array([k[0] for k in known], np.int8)[
            pc.fill_null(where, 0).to_numpy(zero_copy_only=False)[fast]
        ]
        if self.extension_pattern:
            extension = pc.fill_null(pc.match_substring_regex(urls, self.extension_pattern), False).to_numpy(
                zero_copy_only=False
            )
            codes[fast & (codes == 0) & extension] = CODE["file_extension"]
        slow = np.flatnonzero(~fast)
        if len(slow):
            done = [
                self.urls.get(u) or self.url_class(u) if u else ("no_url", None, None)
                for u in raw.take(pa.array(slow)).to_pylist()
            ]
            codes[slow] = [CODE[d[0]] for d in done]
            urls = pc.coalesce(urls, spread(pa.array([d[1] for d in done], pa.string()), slow, len(raw)))
            domains = pc.coalesce(domains, spread(pa.array([d[2] for d in done], pa.string()), slow, len(raw)))
        return codes, urls, domains

    def _host_code(self, host: str) -> tuple[int, str]:
        reason, domain = self.host_class(host)
        return CODE[reason or "candidate"], domain

    def batch(
        self, records: list[Submission], dropped: Counter, examples: DropExamples | None = None
    ) -> pa.Table | None:
        """The candidate rows of a batch (CANDIDATE schema); every other record counted in `dropped` (and
        handed to `examples`).

        Reasons that need no URL come first (they take precedence), and only the records left by them
        (a fifth under the submission karma rule) are turned into Arrow columns and URL work."""
        c = self.config
        code = np.zeros(len(records), np.int8)
        if self.subreddits:
            subreddit = pa.array([r.subreddit for r in records], pa.string())
            names = pc.unique(subreddit).to_pylist()
            blocked = [s for s in names if s and s.lower() in self.subreddits]
            if blocked:
                code[
                    pc.fill_null(pc.is_in(subreddit, pa.array(blocked, pa.string())), False).to_numpy(
                        zero_copy_only=False
                    )
                ] = CODE["blocked_subreddit"]
        window = c.start_utc is not None or c.end_utc is not None
        if window:
            created = _int64_column([r.created_utc for r in records], {int, NULL_TYPE}, created_seconds)
            missing = pc.is_null(created).to_numpy(zero_copy_only=False)
            outside = np.zeros(len(records), bool)
            values = pc.fill_null(created, 0).to_numpy()
            if c.start_utc is not None:
                outside |= values < c.start_utc
            if c.end_utc is not None:
                outside |= values >= c.end_utc
            code[outside & ~missing] = CODE["out_of_window"]
            code[missing] = CODE["no_date"]
        if c.drop_nsfw:
            code[np.array([r.over_18 is True for r in records], bool)] = CODE["nsfw"]
        code[np.array([not r.url for r in records], bool)] = CODE["no_url"]
        code[np.array([r.is_self is True for r in records], bool)] = CODE["self_post"]
        score = _int64_column([r.score for r in records], {int}, score_of)
        if c.karma_rule == "submission":  # most submissions: dropped before any URL work
            code[(code == 0) & (score.to_numpy(zero_copy_only=False) < c.min_karma)] = CODE["low_karma"]
        pending = np.flatnonzero(code == 0)
        if len(pending):
            left = [records[i] for i in pending.tolist()]
            encoded = pc.dictionary_encode(
                pa.array([r.url for r in left], pa.string())
            )  # distinct URLs and each row's, in one pass
            codes, urls, domains = self.url_codes(encoded.dictionary)
            index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            code[pending] = codes[index]
        ids = None
        if examples:  # every record's id, for its key; the candidates' ids are then taken from it
            ids = pa.array([r.id for r in records], pa.string())
            examples.add_batch(records, code, ids, score)
        counts = np.bincount(code, minlength=len(REASONS))
        for reason, count in zip(REASONS[1:], counts[1:].tolist()):
            if count:
                dropped[reason] += count
        if not counts[0]:
            return None
        keep = codes[index] == 0
        kept = [r for r, k in zip(left, keep.tolist()) if k]
        take, distinct = (
            pa.array(pending[keep]),
            pa.array(index[keep]),
        )  # positions among the records, among the distinct URLs
        # columns already built over the whole batch (when a rule needed them) are taken, not built again
        created = (
            created.take(take)
            if window
            else _int64_column([r.created_utc for r in kept], {int, NULL_TYPE}, created_seconds)
        )
        subreddit = subreddit.take(take) if self.subreddits else pa.array([r.subreddit for r in kept], pa.string())
        return pa.table(
            [
                urls.take(distinct),
                domains.take(distinct),
                ids.take(take) if ids is not None else pa.array([r.id for r in kept], pa.string()),
                subreddit,
                score.take(take),
                pa.array([r.title for r in kept], pa.string()),
                created,
            ],
            schema=CANDIDATE,
        )


# -- examples of dropped submissions ----------------------------------------------------------------


_P1, _P2, _P3, _P4, _P5 = map(
    np.uint64, (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _little_endian(data: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    value = data[at].astype(np.uint64)
    for i in range(1, size):
        value |= data[at + i].astype(np.uint64) << np.uint64(8 * i)
    return value


def id_keys(ids: pa.Array) -> np.ndarray:
    """xxh64 of each id's UTF-8 bytes, the key `failures.as_sample` gives a row by its id, computed in
    numpy over a whole batch (Reddit ids are 2-13 characters: xxh64's short-input path). 0 for a null
    or empty id and one of 32 bytes or more: such a row always reaches the sampler, which keys it."""
    offsets = np.frombuffer(ids.buffers()[1], np.int32, len(ids) + 1, ids.offset * 4)
    length = np.diff(offsets)
    h = np.zeros(len(ids), np.uint64)
    if ids.buffers()[2] is None:  # no id has a byte
        return h
    data = np.frombuffer(ids.buffers()[2], np.uint8)
    at = offsets[:-1].astype(np.int64)  # each id's next byte; no read goes past an id's last byte
    with np.errstate(over="ignore"):
        h += _P5 + length.astype(np.uint64)
        for lane in range(3):
            m = np.flatnonzero(length >= 8 * (lane + 1))
            if not len(m):
                break
            lane_key = _rotl(_little_endian(data, at[m], 8) * _P2, 31) * _P1
            h[m] = _rotl(h[m] ^ lane_key, 27) * _P1 + _P4
            at[m] += 8
        m = np.flatnonzero(length & 4)
        h[m] = _rotl(h[m] ^ _little_endian(data, at[m], 4) * _P1, 23) * _P2 + _P3
        at[m] += 4
        for i in range(3):
            m = np.flatnonzero((length & 3) > i)
            h[m] = _rotl(h[m] ^ data[at[m] + i].astype(np.uint64) * _P5, 11) * _P1
        h ^= h >> np.uint64(33)
        h *= _P2
        h ^= h >> np.uint64(29)
        h *= _P3
        h ^= h >> np.uint64(32)
    h[(length == 0) | (length >= 32) | ~ids.is_valid().to_numpy(zero_copy_only=False)] = 0
    return h


class DropExamples:
    """A task's examples of the submissions it drops, per reason, with the columns a person needs to
    judge the drop: id, the URL as given (the merge's: the normalized URL), reason, and subreddit,
    score and title in `text`. `failures.DropSampler` keeps the `keep` whose id hashes smallest, with
    Python work per row and per call, so it sees only the rows that can still be among those, a few
    thousand at a time: their keys are hashed in numpy (`id_keys`) and compared with the `keep`-th
    smallest key of their reason so far."""

    def __init__(self, sink: DropSink, part: str, reasons: tuple[str, ...]):
        self.keep, self.reasons = sink.keep, pa.array(reasons)
        self.sampler = DropSampler(sink.folder, sink.keep, part)
        self.smallest: dict[int, np.ndarray] = {}  # per reason code: the `keep` smallest keys so far
        self.limit = np.full(len(reasons), np.iinfo(np.uint64).max, np.uint64)  # per code: the largest of them
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add_batch(self, records: list[Submission], code: np.ndarray, ids: pa.Array, score: pa.Array) -> None:
        """A classified batch: `code`, each record's reason (0: a candidate); `ids`, `score`: its columns."""
        keys = id_keys(ids)
        rows = np.flatnonzero((code != 0) & (keys <= self.limit[code]))
        rows = rows[self._could_be_kept(keys[rows], code[rows])]
        if len(rows):
            picked = [records[i] for i in rows.tolist()]
            self._add(
                ids.take(rows),
                pa.array([r.url for r in picked], pa.string()),
                code[rows],
                pa.array([r.subreddit for r in picked], pa.string()),
                score.take(rows),
                pa.array([r.title for r in picked], pa.string()),
            )

    def add_candidates(self, candidates: pa.Table, rows: np.ndarray, code: np.ndarray) -> None:
        """Candidate rows the merge drops (positions `rows` of `candidates`), each under its reason code."""
        keys = id_keys(candidates["reddit_id"].take(rows).combine_chunks())
        picked = self._could_be_kept(keys, code)
        if len(picked):
            kept = candidates.take(rows[picked]).combine_chunks()
            ids = kept["reddit_id"].chunk(0) if kept.num_rows else pa.array([], pa.string())
            self._add(ids, kept["url"], code[picked], kept["subreddit"], kept["score"], kept["title"])

    def add_line(self, reason: str, text: str) -> None:
        """A drop without a record (a malformed line, a dump's lost tail): what is known in `text`."""
        self.sampler.add(pa.table({DROP_REASON: [reason], "text": [text]}))

    def _could_be_kept(self, keys: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Positions of the rows whose key is among the `keep` smallest of their reason so far (ties and
        key 0, which the sampler computes itself, all in), updating those keys; every row when all are kept."""
        if self.keep is None:
            return np.arange(len(keys))
        picked = []
        for reason in np.unique(code).tolist():
            at = np.flatnonzero(code == reason)
            known = keys[at][keys[at] != 0]
            both = np.concatenate([self.smallest.get(reason, known[:0]), known])
            if len(both) >= self.keep:
                self.limit[reason] = np.partition(both, self.keep - 1)[self.keep - 1]
                both = both[both <= self.limit[reason]]
                at = at[(keys[at] <= self.limit[reason]) | (keys[at] == 0)]
            self.smallest[reason] = both
            picked.append(at)
        return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)

    def _add(self, ids, urls, code, subreddits, scores, titles) -> None:
        text = pc.binary_join_element_wise(
            "subreddit: ",
            subreddits,
            "\nscore: ",
            scores.cast(pa.string()),
            "\ntitle: ",
            titles,
            "",
            null_handling="replace",
        )
        self.pending.append(pa.table({"id": ids, "url": urls, DROP_REASON: self.reasons.take(code), "text": text}))
        self.pending_rows += len(ids)
        if self.pending_rows >= PENDING_EXAMPLES:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.sampler.add(pa.concat_tables(self.pending))
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self.sampler.close()


# Rows that could be examples, gathered before the sampler sees them: its cost is per call as well as
# per row; bounded, as they are at most `keep` per reason and batch.
PENDING_EXAMPLES = 4096


def drop_examples(sink: DropSink | None, part: str, reasons: tuple[str, ...]) -> DropExamples | None:
    """A task's `DropExamples` (`reasons`: the names of its reason codes), or None where no example is
    kept (`keep_dropped: 0`)."""
    return DropExamples(sink, part, reasons) if sink is not None and sink.keep != 0 else None


def iter_candidates(
    piece: Slice,
    config: HarvestConfig,
    stats: StageStats,
    batch_rows: int = FLUSH_ROWS,
    examples: DropExamples | None = None,
) -> Iterator[pa.Table]:
    """Candidate submissions of a dump slice as Arrow tables of at most about `batch_rows` rows."""
    keep = BatchFilter(config)
    tables, rows = [], 0
    for records in _batched(read_submissions(piece, config, stats, examples), CLASSIFY_ROWS):
        table = keep.batch(records, stats.dropped, examples)
        del records  # or it lives on while the next batch is read: two batches of records at once
        if table is not None:
            tables.append(table)
            rows += table.num_rows
        if rows >= batch_rows:
            full, tables, rows = pa.concat_tables(tables), [], 0
            yield full  # no reference kept here: the consumer's sorted copy replaces it, not doubles it
            del full
    if tables:
        yield pa.concat_tables(tables)


def _batched(chunks: Iterator[list[Submission]], size: int) -> Iterator[list[Submission]]:
    """The records of the chunks regrouped into lists of at least `size` (the last one: what is left)."""
    pending: list[Submission] = []
    for records in chunks:
        pending += records
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def harvest_file(location: str, config: HarvestConfig) -> tuple[pa.Table, StageStats]:
    """All candidates of one (small) dump file in memory, with the counts of what it dropped."""
    stats = StageStats("harvest", "submissions")
    tables = list(iter_candidates(Slice(storage.normalize(location)), config, stats))
    return (pa.concat_tables(tables) if tables else CANDIDATE.empty_table()), stats


@dataclass(frozen=True)
class HarvestTask:
    piece: Slice
    index: int
    buckets: int
    scratch: str
    config: HarvestConfig
    flush_rows: int = FLUSH_ROWS
    drops: DropSink | None = None  # where its examples of dropped submissions go


# Arrow allocates from the C library's malloc in the harvest's workers. Its default, mimalloc, keeps the
# freed pages of each batch's tables mapped, beside the 2 GB zstd window, for no CPU gain (BENCHMARKS.md).
# Set before the worker starts: switching pools inside the task saves less. The merges run under the
# same environment, so that Ray gives them the read tasks' workers, which have their imports and
# pyarrow's first-call set-up done, instead of retiring those and starting fresh ones.
HARVEST_ENV = (("ARROW_DEFAULT_MEMORY_POOL", "system"),)


def harvest_task(task: HarvestTask) -> dict:
    """Read one dump slice, write its candidates into bucket files; returns counts only (or the
    one-line message of a bad dump, raised again by the driver as an input error: exit 2)."""
    try:
        return _harvest_task(task)
    except DumpError as exc:
        return {"error": str(exc)}


BUCKET = len(CANDIDATE)  # the column a run adds to the candidates: their bucket
RUN = CANDIDATE.append(pa.field("bucket", pa.int32()))
# The merge of a task's runs holds one batch of each run at a time: small batches bound it (~1 MB a
# run) when there are few buckets and many runs (a 50M-record dump makes ~220 runs).
RUN_BATCH_ROWS = 4096
SCRATCH_PARQUET = dict(compression="lz4", use_dictionary=["domain", "subreddit"])  # read once: cheap to write


def _harvest_task(task: HarvestTask) -> dict:
    stats = StageStats("harvest", "submissions")
    examples = drop_examples(task.drops, f"t{task.index:05d}", REASONS)
    candidates = iter_candidates(task.piece, task.config, stats, task.flush_rows, examples)
    buckets = _write_bucket(candidates, task) if task.buckets == 1 else _write_buckets(candidates, task)
    if examples:
        examples.close()
    return {"input": stats.input, "dropped": dict(stats.dropped), "buckets": buckets}


def _write_bucket(candidates: Iterator[pa.Table], task: HarvestTask) -> list[int]:
    """With one bucket nothing is sorted: each buffer is a row group of the one bucket file."""
    path = storage.join(task.scratch, "b00000", f"t{task.index:05d}.parquet")
    with contextlib.ExitStack() as stack:
        writer = None
        for table in candidates:
            writer = writer or stack.enter_context(storage.parquet_writer(path, CANDIDATE, **SCRATCH_PARQUET))
            writer.write_table(table)
            table = None  # freed before the next buffer fills
    return [0] if writer else []


def _write_buckets(candidates: Iterator[pa.Table], task: HarvestTask) -> list[int]:
    """A task leaves one file per bucket however many times its buffer fills (scratch files =
    tasks × buckets, not flushes × buckets): each full buffer is sorted by bucket into a run (Arrow
    IPC, lz4), and the runs are then merged bucket by bucket, one open writer at a time (an open
    writer per bucket would be thousands of files and upload buffers at once)."""
    runs = []
    for flush, table in enumerate(candidates):
        ids = bucket_of(table.column("url"), task.buckets)
        runs.append(storage.join(task.scratch, "runs", f"t{task.index:05d}-{flush:04d}.arrow"))
        with (
            storage.atomic_output(runs[-1]) as sink,
            pa.ipc.new_stream(sink, RUN, options=pa.ipc.IpcWriteOptions(compression="lz4")) as run,
        ):
            for _, part in by_bucket(table.append_column(RUN.field(BUCKET), ids), ids):
                run.write_table(part, max_chunksize=RUN_BATCH_ROWS)
        table = part = None  # freed before the next buffer fills
    buckets = _merge_runs(runs, task)
    for location in runs:
        storage.delete(location)
    return buckets


def _merge_runs(runs: list[str], task: HarvestTask) -> list[int]:
    """Each bucket's rows from every run (each run is sorted by bucket) into that bucket's file, in row
    groups of about `flush_rows` rows; the buckets written."""
    streams = [storage.open_input_stream(location) for location in runs]
    readers = [pa.ipc.open_stream(stream) for stream in streams]
    heads = [next(reader, None) for reader in readers]
    written = []
    while any(head is not None for head in heads):
        bucket = min(head.column(BUCKET)[0].as_py() for head in heads if head is not None)
        path = storage.join(task.scratch, f"b{bucket:05d}", f"t{task.index:05d}.parquet")
        with storage.parquet_writer(path, CANDIDATE, **SCRATCH_PARQUET) as writer:
            group: list[pa.RecordBatch] = []
            rows = 0
            for i, reader in enumerate(readers):
                while heads[i] is not None and heads[i].column(BUCKET)[0].as_py() == bucket:
                    group.append(heads[i].select(range(BUCKET)))
                    rows += len(group[-1])
                    heads[i] = next(reader, None)
                    if rows >= task.flush_rows:
                        writer.write_table(pa.Table.from_batches(group, CANDIDATE))
                        group, rows = [], 0
            if group:
                writer.write_table(pa.Table.from_batches(group, CANDIDATE))
        written.append(bucket)
    for stream in streams:
        stream.close()
    return written


# -- one bucket -> its part of the URL dataset ------------------------------------------------------


def merge_candidates(
    candidates: pa.Table, config: HarvestConfig, stats: StageStats, examples: DropExamples | None = None
) -> pa.Table:
    """One row per URL with all its submissions' provenance (in input order), sorted by URL; URLs
    below the karma rule are dropped (under url_sum; the submission rule dropped them when read).
    Only the qualifying URLs are sorted and only their rows are gathered, since under url_sum most
    URLs of a dump fall below the karma rule."""
    groups = _UrlGroups(candidates["url"])
    karma = groups.karma(candidates["score"].to_numpy(), config.karma_rule)
    qualifies = karma >= config.min_karma
    stats.dropped["low_karma"] += int(groups.count[~qualifies].sum())
    stats.dropped["duplicate_url"] += int(groups.count[qualifies].sum()) - int(qualifies.sum())
    if examples:
        rows, code = groups.dropped_rows(qualifies)
        examples.add_candidates(candidates, rows, code)
    urls, chosen, offsets = groups.sorted_groups(np.flatnonzero(qualifies))
    table = _url_rows(candidates.take(pa.array(groups.rows_of(chosen, offsets))), urls, offsets, karma[chosen])
    stats.output += table.num_rows
    return table


MERGE_DROPS = ("low_karma", "duplicate_url")  # the merge's reasons, by code in `_UrlGroups.dropped_rows`


class _UrlGroups:
    """The rows of a bucket grouped by URL, by their dictionary codes (a hash pass and an integer sort,
    not a string sort of every row): `order` lists the rows group by group, in input order within a
    group; group g is `count[g]` rows from `order[starts[g]]`."""

    def __init__(self, urls: pa.ChunkedArray):
        n = len(urls)
        self.encoded = (
            pc.dictionary_encode(urls.combine_chunks())
            if n
            else pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array([], pa.string()))
        )
        self.codes = self.encoded.indices.to_numpy(zero_copy_only=False)
        self.order = np.argsort(self.codes, kind="stable")
        self.starts = np.flatnonzero(np.diff(self.codes[self.order], prepend=-1)) if n else np.zeros(0, np.int64)
        self.count = np.diff(np.append(self.starts, n))

    def karma(self, score: np.ndarray, rule: str) -> np.ndarray:
        """Per group: its best score (rule "submission") or the sum of its scores ("url_sum")."""
        if not len(self.order):
            return np.zeros(0, np.int64)
        reduce = np.maximum if rule == "submission" else np.add
        return reduce.reduceat(score[self.order], self.starts)

    def dropped_rows(self, qualifies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, code) of the rows the merge drops: every row of a group that does not qualify (code 0,
        low_karma) and all but the first row of one that does (code 1, duplicate_url)."""
        group = np.repeat(np.arange(len(self.count)), self.count)
        first = np.zeros(len(self.order), bool)
        first[self.starts] = True
        dropped = ~qualifies[group] | ~first
        return self.order[dropped], qualifies[group][dropped].astype(np.int8)

    def sorted_groups(self, groups: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """`groups` in URL order: (their URLs, the groups, the offsets of their rows once gathered)."""
        first = self.codes[self.order[self.starts[groups]]] if len(groups) else np.zeros(0, np.int32)
        urls = self.encoded.dictionary.take(pa.array(first))
        by_url = pc.sort_indices(urls).to_numpy()
        groups = groups[by_url]
        return urls.take(pa.array(by_url)), groups, np.concatenate([[0], np.cumsum(self.count[groups])])

    def rows_of(self, groups: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The rows of `groups`, group after group (`offsets` from `sorted_groups`)."""
        sizes = self.count[groups]
        return self.order[np.repeat(self.starts[groups] - offsets[:-1], sizes) + np.arange(offsets[-1])]


def _url_rows(kept: pa.Table, urls: pa.Array, offsets: np.ndarray, karma: np.ndarray) -> pa.Table:
    """The URL dataset's rows from the gathered candidate rows of each URL (`offsets`)."""
    kept = kept.combine_chunks()
    group_starts = offsets[:-1]
    created = kept["created_utc"]
    if len(urls):
        dated = np.add.reduceat(created.is_valid().to_numpy(zero_copy_only=False).astype(np.int64), group_starts) > 0
        earliest = np.minimum.reduceat(pc.fill_null(created, INT64_MAX).to_numpy(), group_starts)
    else:
        dated, earliest = np.zeros(0, bool), np.zeros(0, np.int64)
    list_offsets = pa.array(offsets.astype(np.int32))

    def lists(name: str) -> pa.Array:
        return pa.ListArray.from_arrays(list_offsets, kept[name].combine_chunks())

    return pa.table(
        {
            "url": urls,
            "domain": kept["domain"].take(pa.array(group_starts)),
            "reddit_ids": lists("reddit_id"),
            "subreddits": lists("subreddit"),
            "scores": lists("score"),
            "titles": lists("title"),
            "created_utc": pa.array(earliest, mask=~dated),
            "karma": pa.array(karma),
        },
        schema=URLS,
    )


@dataclass(frozen=True)
class MergeTask:
    bucket: str  # folder of one bucket's candidate files
    part: str  # its output part file
    config: HarvestConfig
    drops: DropSink | None = None  # where its examples of dropped submissions go


def merge_task(task: MergeTask) -> dict:
    """Group one bucket's candidates by URL and write its part of the URL dataset."""
    _decompressor.cache_clear()  # the reads are over: a worker that read dumps gives back its window
    stats = StageStats("harvest", "submissions")
    tables = []
    for location in storage.list_files(task.bucket, (".parquet",)):
        with storage.open_input(location) as f:
            tables.append(pq.read_table(f, use_threads=False))
    candidates = pa.concat_tables(tables) if tables else CANDIDATE.empty_table()
    del tables
    examples = drop_examples(task.drops, storage.name(task.part).removesuffix(".parquet"), MERGE_DROPS)
    urls = merge_candidates(candidates, task.config, stats, examples)
    storage.write_parquet(task.part, urls, compression="zstd")
    if examples:
        examples.close()
    return {"output": stats.output, "dropped": dict(stats.dropped)}


def auto_buckets(total_bytes: int) -> int:
    """Buckets so that one bucket's candidates stay around 500 MB in memory, assuming (generously)
    one candidate per 100 compressed bytes and 300 bytes per grouped candidate."""
    return max(1, min(4096, math.ceil(3 * total_bytes / (500 * 2**20))))


def slices(files: list[str], split_bytes: int) -> list[Slice]:
    """One slice per dump file; byte ranges of `split_bytes` for large plain NDJSON files."""
    out = []
    for location in files:
        size = storage.size(location)
        if location.endswith(PLAIN_SUFFIXES) and size > split_bytes:
            out += [Slice(location, start, min(size, start + split_bytes)) for start in range(0, size, split_bytes)]
        else:
            out.append(Slice(location))
    return out


def _read_tasks(ctx: StepContext) -> list[HarvestTask]:
    config: HarvestConfig = ctx.config
    files = dump_files(ctx.inputs)
    buckets = config.buckets or auto_buckets(sum(storage.size(f) for f in files))
    return [
        HarvestTask(piece, i, buckets, ctx.folder("read"), config, drops=ctx.drops("read"))
        for i, piece in enumerate(slices(files, config.split_bytes))
    ]


def _read_resources(ctx: StepContext) -> Resources:
    """A task holds one decompression window (up to 2 GiB for --long=31 dumps) and its buffered candidates."""
    zstd = any(f.endswith(".zst") for f in dump_files(ctx.inputs))
    return Resources(num_cpus=1, memory=ZSTD_MAX_WINDOW + 512 * 2**20 if zstd else 512 * 2**20, env=HARVEST_ENV)


def _read(ctx: StepContext, results: list[dict]) -> dict:
    """The counts; the buckets that got candidates (at most `buckets` numbers: the driver never lists
    the bucket files) are the summary the merge step reads."""
    filled: set[int] = set()
    for result in results:
        if "error" in result:
            raise DumpError(result["error"])
        ctx.stats.input += result["input"]
        ctx.stats.dropped.update(result["dropped"])
        filled.update(result["buckets"])
    return {"buckets": sorted(filled)}


def _merge_tasks(ctx: StepContext) -> list[MergeTask]:
    return [
        MergeTask(
            storage.join(ctx.folder("read"), f"b{bucket:05d}"),
            storage.join(ctx.out, f"part-{bucket:05d}.parquet"),
            ctx.config,
            ctx.drops("merge"),
        )
        for bucket in ctx.summary("read")["buckets"]
    ]


def _merged(ctx: StepContext, results: list[dict]) -> None:
    for result in results:
        ctx.stats.output += result["output"]
        ctx.stats.dropped.update(result["dropped"])


HARVEST = Stage(
    name="harvest",
    unit="submissions",
    required={},
    output=URLS,
    steps=(
        Step("read", harvest_task, _read_tasks, _read, _read_resources),
        Step("merge", merge_task, _merge_tasks, _merged, Resources(num_cpus=1, env=HARVEST_ENV)),
    ),
    parquet_inputs=False,
    description="Reddit submission dumps -> one row per qualifying outbound URL, with provenance",
)
