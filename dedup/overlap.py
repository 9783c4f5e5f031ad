"""Eval-set n-gram overlap: per document (decontamination) and per eval set (the GPT-2 paper's Table 6).

The eval sets are small (WikiText-103 test: ~250k 8-grams), the corpus is not: every distinct eval
n-gram hash is kept in one sorted array (`EvalNgrams`, written once to storage), and each corpus
chunk is scanned by a task: its n-gram hashes (numpy) go through a Bloom filter of the eval
n-grams (~2 probes per miss), the few hits are confirmed exactly against the sorted array, so a
match is a real shared n-gram (up to 64-bit hash collisions). A task returns its counts and a
bitmap over the eval n-grams it found; the driver ORs the bitmaps (size: eval n-grams / 8 bytes).

`webtext overlap` (webtext.pipeline.overlap) runs the stage OVERLAP: decontaminate's `evalsets` step (the eval n-grams, built
in a task and kept by a rerun), then a `scan` that only counts (no documents written).

That gives the paper's number — the share of each eval set's 8-grams found in the corpus — exactly,
and in one pass with decontamination. (A Bloom filter of the corpus' own n-grams, as in the paper,
costs ~4.8 bytes per corpus n-gram at a 1e-8 false-positive rate — ~40 GB for WebText — and its
merge needs one process holding all of it.)
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup import chunks as chunking
from dedup.bloom import BloomFilter, ngram_hashes
from dedup.chunks import Chunk
from dedup.evalsets import evalset_files, name_of, read_evalset
from webtext.core import storage
from webtext.core.config import DecontaminateConfig
from webtext.core.failures import DropSink
from webtext.core.schemas import OVERLAP_TABLE, conform
from webtext.core.stage import DROP_REASON, InputError, Stage, Step, StepContext

BATCH = 4096  # documents hashed at a time


@dataclass
class EvalNgrams:
    """Every distinct n-gram hash of the eval sets, sorted, and which sets contain each."""

    names: list[str]
    hashes: np.ndarray  # sorted distinct uint64
    member: np.ndarray  # (sets x hashes) bool
    bloom: BloomFilter

    @classmethod
    def build(cls, evalsets: list, n: int, false_positive_rate: float) -> EvalNgrams:
        names, per_set = [], []
        for entry in evalsets:
            names.append(name_of(str(entry)))
            per_set.append(np.unique(ngram_hashes(read_evalset(str(entry)), n)[0]))
        if len(set(names)) != len(names):
            raise InputError(f"eval sets with the same name: {', '.join(names)} (rename a file)")
        hashes = np.unique(np.concatenate(per_set)) if per_set else np.zeros(0, np.uint64)
        member = np.zeros((len(names), len(hashes)), bool)
        for i, h in enumerate(per_set):
            member[i, np.searchsorted(hashes, h)] = True
        bloom = BloomFilter.for_capacity(len(hashes), false_positive_rate)
        bloom.add(hashes)
        return cls(names, hashes, member, bloom)

    def save(self, location: str) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            names=np.array(self.names),
            hashes=self.hashes,
            member=self.member,
            bloom=np.frombuffer(self.bloom.to_bytes(), np.uint8),
        )
        storage.write_bytes(location, buffer.getvalue())

    @classmethod
    def load(cls, location: str) -> EvalNgrams:
        data = np.load(io.BytesIO(storage.read_bytes(location)))
        return cls(
            data["names"].tolist(), data["hashes"], data["member"], BloomFilter.from_bytes(data["bloom"].tobytes())
        )

    def matches(self, texts, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per text: n-grams found in any eval set, and per set (sets x texts); and the indexes
        (into `hashes`) of the eval n-grams found."""
        grams, doc = ngram_hashes(texts, n)
        hit = self.bloom.contains(grams)
        grams, doc = grams[hit], doc[hit]
        idx = np.minimum(np.searchsorted(self.hashes, grams), max(len(self.hashes) - 1, 0))
        real = self.hashes[idx] == grams if len(self.hashes) else np.zeros(len(grams), bool)
        idx, doc = idx[real], doc[real]
        total = np.bincount(doc, minlength=len(texts))
        per_set = (
            np.stack([np.bincount(doc[self.member[i, idx]], minlength=len(texts)) for i in range(len(self.names))])
            if self.names
            else np.zeros((0, len(texts)), np.int64)
        )
        return total, per_set, idx


@dataclass(frozen=True)
class Scan:
    """One corpus pass: count matches per document; optionally write the documents out."""

    evalset_file: str
    ngram: int
    min_matches: int
    out: str | None = None  # write kept documents here (part-NNNNN.parquet)
    drop: bool = True
    stage: Stage | None = None
    output: pa.Schema | None = None
    drops: DropSink | None = None  # where the dropped documents go (the stage's `_dropped/` examples)


@dataclass(frozen=True)
class ScanTask:
    scan: Scan
    chunk: Chunk


def scan_chunk(task: ScanTask) -> dict:
    """A chunk's matches: its counts and found-bitmap, and with `scan.out` its documents written."""
    scan, chunk = task.scan, task.chunk
    evals = EvalNgrams.load(scan.evalset_file)
    table = chunking.read(scan.stage or OVERLAP, chunk, None if scan.out else ["text"])
    texts = table.column("text").combine_chunks()
    total, found, contaminated = _match(evals, texts, scan)
    result = {"rows": len(texts), "found": np.packbits(found).tobytes(), "outcomes": contaminated, "dropped": {}}
    if scan.out is not None:
        kept, dropped = _write_scanned(scan, chunk, table, total)
        result["dropped"] = {"contaminated": dropped} if dropped else {}
        result["kept"] = kept
    return result


def _match(evals: EvalNgrams, texts: pa.StringArray, scan: Scan) -> tuple[np.ndarray, np.ndarray, dict]:
    """Eval n-grams per text, which eval n-grams were found, and the texts with `min_matches` of
    each set's (`contaminated_by:<set>`), BATCH texts at a time."""
    found = np.zeros(len(evals.hashes), bool)
    total = np.zeros(len(texts), np.int64)
    contaminated = Counter()
    for lo in range(0, len(texts), BATCH):
        t, per_set, idx = evals.matches(texts.slice(lo, BATCH), scan.ngram)
        total[lo : lo + BATCH] = t
        found[idx] = True
        for name, counts in zip(evals.names, per_set):
            contaminated[f"contaminated_by:{name}"] += int((counts >= scan.min_matches).sum())
    return total, found, dict(contaminated)


def _write_scanned(scan: Scan, chunk: Chunk, table: pa.Table, total: np.ndarray) -> tuple[int, int]:
    """The chunk's documents with `eval_ngram_matches`, less the contaminated ones unless flagged;
    returns (kept, dropped)."""
    matches = pa.array(total.astype(np.int32), pa.int32())
    table = table.append_column("eval_ngram_matches", matches)
    bad = pc.greater_equal(matches, scan.min_matches)
    kept = table.filter(pc.invert(bad)) if scan.drop else table
    if scan.drops is not None and scan.drop:
        reason = pa.array(["contaminated"] * table.num_rows, pa.string())
        scan.drops.write(table.append_column(DROP_REASON, reason).filter(bad), f"part-{chunk.index:05d}")
    storage.write_parquet(storage.join(scan.out, f"part-{chunk.index:05d}.parquet"), conform(kept, scan.output))
    return kept.num_rows, table.num_rows - kept.num_rows


def summarize(evals: EvalNgrams, found: np.ndarray, corpus: str, documents: int) -> dict:
    """The overlap report: per eval set, its distinct n-grams and the share found in the corpus."""
    sets = {}
    for name, member in zip(evals.names, evals.member):
        total = int(member.sum())
        hit = int((member & found).sum())
        sets[name] = {"ngrams": total, "found": hit, "percent": round(100 * hit / total, 2) if total else 0.0}
    return {"corpus": corpus, "documents": documents, "sets": sets}


def format_table(report: dict, n: int) -> str:
    """Like GPT-2's Table 6: the percentage of each eval set's n-grams found in the corpus."""
    width = max([len("eval set")] + [len(k) for k in report["sets"]])
    lines = [f"{'eval set':<{width}}  {n}-grams    found  % in corpus", "-" * (width + 32)]
    for name, row in report["sets"].items():
        lines.append(f"{name:<{width}}  {row['ngrams']:>8,} {row['found']:>8,}  {row['percent']:>10.2f}%")
    lines.append(f"(corpus: {report['corpus']}, {report['documents']:,} documents)")
    return "\n".join(lines)


def found_ngrams(evals: EvalNgrams, results: list[dict]) -> np.ndarray:
    """The eval n-grams found by any scanned chunk (the OR of their bitmaps)."""
    found = np.zeros(len(evals.hashes), bool)
    for r in results:
        found |= np.unpackbits(np.frombuffer(r["found"], np.uint8), count=len(evals.hashes)).astype(bool)
    return found


@dataclass(frozen=True)
class EvalsetsTask:
    config: DecontaminateConfig
    location: str  # where the eval n-grams go


def build_evalsets(task: EvalsetsTask) -> None:
    config = task.config
    EvalNgrams.build(config.evalsets, config.ngram, config.false_positive_rate).save(task.location)


def evalsets_file(ctx: StepContext) -> str:
    return storage.join(ctx.folder("evalsets"), "evalsets.npz")


# the first step of decontaminate and of overlap: the eval sets' n-grams, from the config section
EVALSETS = Step("evalsets", build_evalsets, lambda ctx: [EvalsetsTask(ctx.config, evalsets_file(ctx))])


def _scan_tasks(ctx: StepContext) -> list[ScanTask]:
    scan = Scan(evalsets_file(ctx), ctx.config.ngram, 1)
    return [ScanTask(scan, chunk) for chunk in chunking.chunks(ctx.files)]


def _report(ctx: StepContext, results: list[dict]) -> None:
    """Every document counted as passed (none is written), and the report in the stage's folder."""
    evals = EvalNgrams.load(evalsets_file(ctx))
    documents = sum(r["rows"] for r in results)
    ctx.stats.output = documents
    report = summarize(evals, found_ngrams(evals, results), ctx.inputs[0], documents)
    report["ngram"] = ctx.config.ngram
    storage.write_json(storage.join(ctx.out, OVERLAP_TABLE), report)


OVERLAP = Stage(
    name="overlap",
    unit="documents",
    required={"text": pa.string()},
    output=pa.schema([]),
    steps=(EVALSETS, Step("scan", scan_chunk, _scan_tasks, _report)),
    reads=evalset_files,
    description="share of each eval set's n-grams found in a corpus",
)
