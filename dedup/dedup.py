"""The dedup stage: exact and near-duplicate removal as a sequence of partitioned Ray tasks.

No step holds every document, signature or id in one process, and the driver only sees counts.
Each is a `Step` of the stage, so a run killed in one resumes there (the runner keeps the earlier ones):

1. signatures (one task per chunk of row groups): MinHash signatures (numpy, `dedup.minhash`), the
   exact-text key and the LSH band keys. Writes the chunk's ranks and shingle sets (or signatures,
   `verify: signature`) once, and its (key, node) rows to K hash buckets.
2. candidates (one task per bucket): documents with an equal key are candidate pairs (each
   compared with at most `max_pairs_per_doc` earlier members of its key group, so a group of 10k
   identical pages costs 320k pairs, not 50M, and stays connected); pairs go to the chunk of
   their first document. Exact-text keys go through the same shuffle as band keys.
3. pairs (per chunk): the first document's rank and shingle set join each pair; pairs go on to
   the chunk of their second document.
4. verify (per chunk): the second document's joins; a pair is an edge when the texts have the
   same exact key (`exact`) or a Jaccard similarity >= `threshold` (`near`): exact, from the
   shingle sets (`verify: jaccard`), or estimated by signature agreement (`verify: signature`).
   Edges are written both ways, partitioned by node.
5. components: min-label propagation, one task per node partition and round, until no label
   changes (rounds = the largest cluster's diameter + 1). A node is its rank string, so the
   minimum label of a cluster is its survivor: most karma, then earliest created_utc, then id.
6. clusters (per partition): each clustered document's (row, cluster, reason) goes to its chunk.
7. filter (per chunk): the chunk's rows are written out without the duplicates.

Scratch space per document: its distinct shingle hashes (4 bytes each; 512 bytes of signature
with `verify: signature`), a ~60-byte rank, and 16 bytes per band key plus one exact key.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup import chunks as chunking
from dedup.chunks import Chunk
from dedup.minhash import band_keys, bands_rows, sign_with_shingles
from webtext.core import storage
from webtext.core.config import DedupConfig
from webtext.core.failures import DropSink
from webtext.core.schemas import DEDUP_FIELDS, DOCS, conform
from webtext.core.stage import DROP_REASON, Resources, Stage, Step, StepContext, constant_default, null_default

SIGN_BATCH = 2_000  # documents per numpy signature batch
ROWS_PER_BUCKET = 2_000_000  # key rows per candidates task
NODE_PARTS = 8  # min-label propagation partitions (per million documents, at least this)
_SEP = "\x00"  # sorts below every character of an id, so the rank order is the id order

OUTPUT = pa.schema([f if f.name in ("id", "text") else f.with_nullable(True) for f in DOCS] + DEDUP_FIELDS)


@dataclass(frozen=True)
class Job:
    """What every task of one dedup run needs (small, pickled with each task): the sizes, and the
    folder of each step."""

    config: DedupConfig
    buckets: int
    parts: int
    bands: int
    rows: int
    signatures: str  # docs/<chunk>.parquet (rank, shingle set or signature); keys/<bucket>/<chunk>.parquet
    candidates: str  # <chunk of the first document>/<bucket>.parquet: candidate pairs
    pairs: str  # <chunk of the second document>/<chunk>.parquet: pairs with the first's rank and data
    verify: str  # <node partition>/<chunk>.parquet: edges, both ways
    components: str  # labels/<round>/<partition>.parquet; msgs/<round>/<partition>/
    clusters: str  # <chunk>/<partition>.parquet: (row, cluster, reason)
    out: str
    drops: DropSink  # where the filter hands the duplicates it removes (the stage's `_dropped/` examples)


@dataclass(frozen=True)
class ChunkTask:
    job: Job
    chunk: Chunk


@dataclass(frozen=True)
class BucketTask:
    job: Job
    bucket: int


@dataclass(frozen=True)
class PartTask:
    job: Job
    part: int
    round: int


def _p(folder: str, *parts: str) -> str:
    return storage.join(folder, *parts)


def _part_of(values: list[str], parts: int) -> np.ndarray:
    return np.fromiter((zlib.crc32(v.encode()) % parts for v in values), np.int64, len(values))


# -- ranks: the survivor order as one sortable string -------------------------------------------------


def ranks(table: pa.Table, hashes: np.ndarray, nodes: np.ndarray) -> list[str]:
    """`-karma, created_utc, id` as a string whose minimum is the survivor, then hash and node."""
    karma = table.column("karma").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    created = table.column("created_utc").to_pylist()
    ids = table.column("id").to_pylist()
    out = []
    for k, c, i, h, n in zip(karma.tolist(), created, ids, hashes.tolist(), nodes.tolist()):
        c_key = (1 << 64) - 1 if c is None else c + (1 << 63)
        out.append(f"{(1 << 63) - 1 - k:020d}{c_key:020d}{i}{_SEP}{h:016x}{_SEP}{n:016x}")
    return out


def _parse(rank: str) -> tuple[str, str, int]:
    """(id, exact hash, node) of a rank string."""
    head, h, node = rank[40:].rsplit(_SEP, 2)
    return head, h, int(node, 16)


# -- steps ------------------------------------------------------------------------------------------


def _sign(task: ChunkTask) -> int:
    job, chunk = task.job, task.chunk
    table = chunking.read(DEDUP, chunk, ["id", "text", "karma", "created_utc"])
    texts = table.column("text").combine_chunks()
    n = len(texts)
    parts = [sign_with_shingles(texts.slice(lo, SIGN_BATCH), job.config) for lo in range(0, n, SIGN_BATCH)]
    sigs = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, job.config.num_perm), np.uint32)
    hashes = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint64)
    nodes = (np.uint64(chunk.index) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    if job.config.verify == "jaccard":
        data = pa.chunked_array([p[2] for p in parts], pa.list_(pa.uint32()))
    else:
        data = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4 * job.config.num_perm), n, [None, pa.py_buffer(sigs.tobytes())]
        )
    docs = pa.table({"rank": pa.array(ranks(table, hashes, nodes), pa.string()), "data": data})
    storage.write_parquet(_p(job.signatures, "docs", f"{chunk.index:06d}.parquet"), docs)
    key_cols = []
    if job.config.near:
        key_cols.append(band_keys(sigs, job.bands, job.rows))
    if job.config.exact:
        key_cols.append(hashes[:, None])
    if not key_cols or not n:
        return n
    keys = np.concatenate(key_cols, axis=1)
    flat_keys = keys.reshape(-1)
    flat_nodes = np.repeat(nodes, keys.shape[1])
    bucket = flat_keys % np.uint64(job.buckets)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(job.buckets + 1))
    for b in range(job.buckets):
        sel = order[bounds[b] : bounds[b + 1]]
        if len(sel):
            storage.write_parquet(
                _p(job.signatures, "keys", f"{b:05d}", f"{chunk.index:06d}.parquet"),
                pa.table({"key": flat_keys[sel], "node": flat_nodes[sel]}),
            )
    return n


def _write_grouped(table: pa.Table, group: np.ndarray, folder: str, name: str) -> None:
    """Write `table`'s rows to `folder/<group>/name` per distinct group value."""
    order = np.argsort(group, kind="stable")
    values, starts = np.unique(group[order], return_index=True)
    ends = list(starts[1:]) + [len(order)]
    for value, lo, hi in zip(values.tolist(), starts.tolist(), ends):
        storage.write_parquet(storage.join(folder, f"{value:06d}", name), table.take(pa.array(order[lo:hi])))


def _candidates(task: BucketTask) -> int:
    job, bucket = task.job, task.bucket
    folder = _p(job.signatures, "keys", f"{bucket:05d}")
    if not storage.exists(folder):
        return 0
    table = pa.concat_tables(pq.read_table(storage.open_input(f)) for f in storage.list_files(folder))
    keys = table.column("key").to_numpy()
    nodes = table.column("node").to_numpy()
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    pairs_a, pairs_b = [], []
    for d in range(1, min(job.config.max_pairs_per_doc, len(keys) - 1) + 1):
        same = keys[d:] == keys[:-d]
        if not same.any():
            break
        pairs_a.append(nodes[:-d][same])
        pairs_b.append(nodes[d:][same])
    if not pairs_a:
        return 0
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    keep = a != b
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    if not len(pairs):
        return 0
    _write_grouped(
        pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}),
        (pairs[:, 0] >> np.uint64(32)).astype(np.int64),
        job.candidates,
        f"{bucket:05d}.parquet",
    )
    return len(pairs)


def _read_folder(folder: str) -> pa.Table | None:
    if not storage.exists(folder):
        return None
    tables = [pq.read_table(storage.open_input(f)) for f in storage.list_files(folder, (".parquet",))]
    return pa.concat_tables(tables) if tables else None


def _docs(job: Job, chunk: int) -> pa.Table:
    return pq.read_table(storage.open_input(_p(job.signatures, "docs", f"{chunk:06d}.parquet")))


def _attach(task: ChunkTask) -> int:
    job, chunk = task.job, task.chunk.index
    pairs = _read_folder(_p(job.candidates, f"{chunk:06d}"))
    if pairs is None:
        return 0
    both = np.unique(np.stack([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()], axis=1), axis=0)
    docs = _docs(job, chunk)
    rows = pa.array((both[:, 0] & np.uint64(0xFFFFFFFF)).astype(np.int64))
    table = pa.table(
        {"a_rank": docs.column("rank").take(rows), "a_data": docs.column("data").take(rows), "b": both[:, 1]}
    )
    _write_grouped(table, (both[:, 1] >> np.uint64(32)).astype(np.int64), job.pairs, f"{chunk:06d}.parquet")
    return len(both)


def _sig_matrix(column: pa.ChunkedArray, num_perm: int) -> np.ndarray:
    data = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.frombuffer(data.buffers()[1], np.uint32, len(data) * num_perm, data.offset * 4 * num_perm).reshape(
        -1, num_perm
    )


def _jaccards(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Exact Jaccard of each pair of sorted distinct shingle-hash lists."""
    a, b = a.combine_chunks(), b.combine_chunks()
    a_off, b_off = a.offsets.to_numpy(), b.offsets.to_numpy()
    a_val, b_val = a.values.to_numpy(), b.values.to_numpy()
    out = np.zeros(len(a))
    for i in range(len(a)):
        x, y = a_val[a_off[i] : a_off[i + 1]], b_val[b_off[i] : b_off[i + 1]]
        common = len(np.intersect1d(x, y, assume_unique=True))
        out[i] = common / (len(x) + len(y) - common)
    return out


def _verify(task: ChunkTask) -> int:
    job, chunk = task.job, task.chunk.index
    pairs = _read_folder(_p(job.pairs, f"{chunk:06d}"))
    if pairs is None:
        return 0
    docs = _docs(job, chunk)
    rows = pa.array((pairs.column("b").to_numpy() & np.uint64(0xFFFFFFFF)).astype(np.int64))
    b_rank = docs.column("rank").take(rows)
    b_data = docs.column("data").take(rows)
    if job.config.verify == "jaccard":
        similarity = _jaccards(pairs.column("a_data"), b_data)
    else:
        n = job.config.num_perm
        similarity = (_sig_matrix(pairs.column("a_data"), n) == _sig_matrix(b_data, n)).mean(axis=1)
    a_ranks, b_ranks = pairs.column("a_rank").to_pylist(), b_rank.to_pylist()
    same_text = np.array([_parse(x)[1] == _parse(y)[1] for x, y in zip(a_ranks, b_ranks)], bool)
    edge = np.zeros(len(a_ranks), bool)
    if job.config.exact:
        edge |= same_text
    if job.config.near:
        edge |= similarity >= job.config.threshold
    src = [r for r, e in zip(a_ranks, edge) if e] + [r for r, e in zip(b_ranks, edge) if e]
    dst = [r for r, e in zip(b_ranks, edge) if e] + [r for r, e in zip(a_ranks, edge) if e]
    if src:
        _write_grouped(
            pa.table({"src": pa.array(src, pa.string()), "dst": pa.array(dst, pa.string())}),
            _part_of(src, job.parts),
            job.verify,
            f"{chunk:06d}.parquet",
        )
    return int(edge.sum())


def _propagate(task: PartTask) -> int:
    """One min-label round for one node partition; returns the messages sent (0: stable)."""
    job, part, round_ = task.job, task.part, task.round
    adj = _read_folder(_p(job.verify, f"{part:06d}"))
    if adj is None:
        return 0
    if round_ == 0:
        labels = adj.group_by("src").aggregate([("dst", "min")]).rename_columns(["node", "new"])
        labels = labels.append_column("label", pc.min_element_wise(labels.column("node"), labels.column("new")))
        changed = labels
    else:
        old = pq.read_table(
            storage.open_input(_p(job.components, "labels", f"{round_ - 1:04d}", f"{part:06d}.parquet"))
        )
        msgs = _read_folder(_p(job.components, "msgs", f"{round_:04d}", f"{part:06d}"))
        if msgs is None:
            storage.write_parquet(_p(job.components, "labels", f"{round_:04d}", f"{part:06d}.parquet"), old)
            return 0
        best = msgs.group_by("node").aggregate([("label", "min")]).rename_columns(["node", "new"])
        labels = old.join(best, "node", join_type="left outer")
        new = pc.coalesce(pc.min_element_wise(labels.column("label"), labels.column("new")), labels.column("label"))
        moved = pc.less(new, labels.column("label")).fill_null(False)
        labels = labels.set_column(labels.column_names.index("label"), "label", new)
        changed = labels.filter(moved)
    labels = labels.select(["node", "label"])
    storage.write_parquet(_p(job.components, "labels", f"{round_:04d}", f"{part:06d}.parquet"), labels)
    if not changed.num_rows:
        return 0
    out = adj.join(changed.select(["node", "label"]), "src", "node", join_type="inner")
    dst = out.column("dst").to_pylist()
    _write_grouped(
        pa.table({"node": out.column("dst"), "label": out.column("label")}),
        _part_of(dst, job.parts),
        _p(job.components, "msgs", f"{round_ + 1:04d}"),
        f"{part:06d}.parquet",
    )
    return out.num_rows


def _route(task: PartTask) -> int:
    """Send each clustered document's survivor id and reason to its chunk."""
    job, part, round_ = task.job, task.part, task.round
    path = _p(job.components, "labels", f"{round_:04d}", f"{part:06d}.parquet")
    if not storage.exists(path):
        return 0
    labels = pq.read_table(storage.open_input(path))
    rows, clusters, reasons, chunks = [], [], [], []
    for node, label in zip(labels.column("node").to_pylist(), labels.column("label").to_pylist()):
        _, h, n = _parse(node)
        survivor, survivor_hash, _ = _parse(label)
        rows.append(n & 0xFFFFFFFF)
        chunks.append(n >> 32)
        clusters.append(survivor)
        reasons.append(None if node == label else ("exact_duplicate" if h == survivor_hash else "near_duplicate"))
    table = pa.table(
        {
            "row": pa.array(rows, pa.int64()),
            "cluster": pa.array(clusters, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    _write_grouped(table, np.array(chunks, np.int64), job.clusters, f"{part:06d}.parquet")
    return len(rows)


def _filter(task: ChunkTask) -> dict:
    """Write the chunk's rows with `duplicate_cluster`, less the duplicates; returns its counts."""
    job, chunk = task.job, task.chunk
    table = chunking.read(DEDUP, chunk)
    n = table.num_rows
    cluster = np.full(n, None, object)
    reason = np.full(n, None, object)
    results = _read_folder(_p(job.clusters, f"{chunk.index:06d}"))
    if results is not None:
        idx = results.column("row").to_numpy()
        cluster[idx] = results.column("cluster").to_pylist()
        reason[idx] = results.column("reason").to_pylist()
    table = table.append_column("duplicate_cluster", pa.array(cluster.tolist(), pa.string()))
    drop = pa.array(reason.tolist(), pa.string())
    kept = table.filter(pc.is_null(drop))
    storage.write_parquet(storage.join(job.out, f"part-{chunk.index:05d}.parquet"), conform(kept, OUTPUT))
    job.drops.write(table.append_column(DROP_REASON, drop).filter(pc.is_valid(drop)), f"part-{chunk.index:05d}")
    counts = Counter(r for r in reason.tolist() if r is not None)
    return {"kept": kept.num_rows, "dropped": dict(counts)}


# -- the steps, on the driver ----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _chunks(files: tuple[str, ...], fingerprint: str) -> list[Chunk]:
    """The input's chunks: every step lists them, the footers are read once per run of the stage."""
    return chunking.chunks(list(files))


def _job(ctx: StepContext) -> Job:
    config: DedupConfig = ctx.config
    documents = ctx.stats.input
    bands, rows = bands_rows(config)
    key_rows = documents * (bands * config.near + config.exact)
    buckets = config.buckets or max(1, -(-key_rows // ROWS_PER_BUCKET))
    parts = max(NODE_PARTS, -(-documents // 1_000_000) * NODE_PARTS)
    folders = [ctx.folder(step) for step in ("signatures", "candidates", "pairs", "verify", "components", "clusters")]
    return Job(config, buckets, parts, bands, rows, *folders, ctx.out, ctx.drops("filter"))


def _chunk_tasks(ctx: StepContext) -> list[ChunkTask]:
    if not ctx.stats.input:  # nothing to do: the runner writes the empty dataset
        return []
    job = _job(ctx)
    return [ChunkTask(job, chunk) for chunk in _chunks(tuple(ctx.files), ctx.fingerprint)]


def _paired_chunk_tasks(ctx: StepContext) -> list[ChunkTask]:
    return _chunk_tasks(ctx) if ctx.stats.outcomes["candidate_pairs"] else []


def _bucket_tasks(ctx: StepContext) -> list[BucketTask]:
    job = _job(ctx)
    return [BucketTask(job, bucket) for bucket in range(job.buckets)] if ctx.stats.input else []


def _part_tasks(ctx: StepContext, round_: int) -> list[PartTask]:
    job = _job(ctx)
    return [PartTask(job, part, round_) for part in range(job.parts)] if ctx.stats.outcomes["verified_pairs"] else []


def _count(outcome: str):
    def finish(ctx: StepContext, results: list[int]) -> None:
        ctx.stats.outcomes[outcome] = sum(results)

    return finish


def _rounds(ctx: StepContext, results: list[int]) -> None:
    ctx.stats.outcomes["component_rounds"] = ctx.round + 1 if ctx.stats.outcomes["verified_pairs"] else 0


def _filtered(ctx: StepContext, results: list[dict]) -> None:
    for result in results:
        ctx.stats.output += result["kept"]
        ctx.stats.dropped.update(result["dropped"])


LIGHT = Resources(num_cpus=1)
STEPS = (
    Step("signatures", _sign, _chunk_tasks, resources=LIGHT),
    Step("candidates", _candidates, _bucket_tasks, _count("candidate_pairs"), LIGHT),
    Step("pairs", _attach, _paired_chunk_tasks, resources=LIGHT),
    Step("verify", _verify, _paired_chunk_tasks, _count("verified_pairs"), LIGHT),
    # min-label propagation: a round per wave of tasks, until no message is sent
    Step(
        "components",
        _propagate,
        lambda ctx: _part_tasks(ctx, ctx.round),
        _rounds,
        LIGHT,
        until=lambda sent: not sum(sent),
    ),
    Step("clusters", _route, lambda ctx: _part_tasks(ctx, ctx.stats.outcomes["component_rounds"] - 1), resources=LIGHT),
    Step("filter", _filter, _chunk_tasks, _filtered, LIGHT),
)


DEDUP = Stage(
    name="dedup",
    unit="documents",
    required={"id": pa.string(), "text": pa.string()},
    optional={
        "karma": (pa.int64(), constant_default(0, pa.int64())),
        "created_utc": (pa.int64(), null_default(pa.int64())),
    },
    output=OUTPUT,
    steps=STEPS,
    non_null=("id", "text"),
    description="exact and MinHash near-duplicate removal; one survivor per cluster",
)
