"""The dedup stage: exact and near-duplicate removal as a sequence of partitioned Ray tasks.

No step holds every document, signature or id in one process, and the driver only sees counts.
Each is a `Step` of the stage, so a run killed in one resumes there (the runner keeps the earlier ones):

1. signatures (one task per chunk of row groups): MinHash signatures (numpy, `dedup.minhash`), the
   exact-text key and the LSH band keys. Writes the chunk's ranks and shingle sets (or signatures,
   `verify: signature`) once, and its (key, node) rows to K hash buckets. A node id is the
   document's chunk and row in one uint64 (`chunks.node_ids`, `chunk_of`, `row_of`).
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


def _docs_path(job: Job, chunk: int) -> str:
    return _p(job.signatures, "docs", f"{chunk:06d}.parquet")


def _labels_path(job: Job, round_: int, part: int) -> str:
    return _p(job.components, "labels", f"{round_:04d}", f"{part:06d}.parquet")


def _sign(task: ChunkTask) -> int:
    """A chunk's documents: their ranks and what verify compares, kept for the joins, and their keys
    sent to the buckets."""
    job, chunk = task.job, task.chunk
    table = chunking.read(DEDUP, chunk, ["id", "text", "karma", "created_utc"])
    sigs, hashes, sets = _signatures(table.column("text").combine_chunks(), job.config)
    nodes = chunking.node_ids(chunk.index, np.arange(table.num_rows))
    docs = pa.table(
        {"rank": pa.array(ranks(table, hashes, nodes), pa.string()), "data": _compared(job.config, sigs, sets)}
    )
    storage.write_parquet(_docs_path(job, chunk.index), docs)
    keys = _keys(job, sigs, hashes)
    if keys.size:
        _write_keys(job, chunk.index, keys, nodes)
    return table.num_rows


def _signatures(texts: pa.StringArray, config: DedupConfig) -> tuple[np.ndarray, np.ndarray, pa.ChunkedArray]:
    """Signatures, exact-text keys and shingle sets, SIGN_BATCH documents at a time (bounded memory)."""
    parts = [sign_with_shingles(texts.slice(lo, SIGN_BATCH), config) for lo in range(0, len(texts), SIGN_BATCH)]
    sets = pa.chunked_array([p[2] for p in parts], pa.list_(pa.uint32()))
    if not parts:
        return np.zeros((0, config.num_perm), np.uint32), np.zeros(0, np.uint64), sets
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), sets


def _compared(config: DedupConfig, sigs: np.ndarray, sets: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """What verify compares: the shingle sets (`jaccard`), or the signatures as fixed-size binary."""
    if config.verify == "jaccard":
        return sets
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4 * config.num_perm), len(sigs), [None, pa.py_buffer(sigs.tobytes())]
    )


def _keys(job: Job, sigs: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(documents x keys) uint64: the LSH band keys (`near`), then the exact-text key (`exact`)."""
    columns = []
    if job.config.near:
        columns.append(band_keys(sigs, job.bands, job.rows))
    if job.config.exact:
        columns.append(hashes[:, None])
    return np.concatenate(columns, axis=1) if columns else np.zeros((len(hashes), 0), np.uint64)


def _write_keys(job: Job, chunk: int, keys: np.ndarray, nodes: np.ndarray) -> None:
    """Every (key, node) row to the bucket of its key, so that equal keys meet in one candidates task."""
    flat_keys = keys.reshape(-1)
    flat_nodes = np.repeat(nodes, keys.shape[1])
    bucket = flat_keys % np.uint64(job.buckets)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(job.buckets + 1))
    for b in range(job.buckets):
        sel = order[bounds[b] : bounds[b + 1]]
        if len(sel):
            storage.write_parquet(
                _p(job.signatures, "keys", f"{b:05d}", f"{chunk:06d}.parquet"),
                pa.table({"key": flat_keys[sel], "node": flat_nodes[sel]}),
            )


def _write_grouped(table: pa.Table, group: np.ndarray, folder: str, name: str) -> None:
    """Write `table`'s rows to `folder/<group>/name` per distinct group value."""
    order = np.argsort(group, kind="stable")
    values, starts = np.unique(group[order], return_index=True)
    ends = list(starts[1:]) + [len(order)]
    for value, lo, hi in zip(values.tolist(), starts.tolist(), ends):
        storage.write_parquet(storage.join(folder, f"{value:06d}", name), table.take(pa.array(order[lo:hi])))


def _candidates(task: BucketTask) -> int:
    """A bucket's candidate pairs, each sent to the chunk of its first document."""
    job, bucket = task.job, task.bucket
    table = _read_folder(_p(job.signatures, "keys", f"{bucket:05d}"))
    if table is None:
        return 0
    pairs = _equal_key_pairs(table.column("key").to_numpy(), table.column("node").to_numpy(), job.config)
    if not len(pairs):
        return 0
    _write_grouped(
        pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}),
        chunking.chunk_of(pairs[:, 0]),
        job.candidates,
        f"{bucket:05d}.parquet",
    )
    return len(pairs)


def _equal_key_pairs(keys: np.ndarray, nodes: np.ndarray, config: DedupConfig) -> np.ndarray:
    """(pairs x 2) distinct (smaller, larger) nodes that share a key: in each key group sorted by node,
    every node with the `max_pairs_per_doc` nodes before it, which keeps the group connected."""
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    pairs_a, pairs_b = [], []
    for d in range(1, min(config.max_pairs_per_doc, len(keys) - 1) + 1):
        same = keys[d:] == keys[:-d]
        if not same.any():
            break
        pairs_a.append(nodes[:-d][same])
        pairs_b.append(nodes[d:][same])
    if not pairs_a:
        return np.zeros((0, 2), np.uint64)
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    keep = a != b
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    return np.unique(np.stack([a, b], axis=1), axis=0)


def _read_folder(folder: str) -> pa.Table | None:
    if not storage.exists(folder):
        return None
    tables = [pq.read_table(storage.open_input(f)) for f in storage.list_files(folder, (".parquet",))]
    return pa.concat_tables(tables) if tables else None


def _docs(job: Job, chunk: int) -> pa.Table:
    return pq.read_table(storage.open_input(_docs_path(job, chunk)))


def _attach(task: ChunkTask) -> int:
    """The first document's rank and data joined to each of the chunk's pairs, sent on to the chunk
    of the second document."""
    job, chunk = task.job, task.chunk.index
    pairs = _read_folder(_p(job.candidates, f"{chunk:06d}"))
    if pairs is None:
        return 0
    both = np.unique(np.stack([pairs.column("a").to_numpy(), pairs.column("b").to_numpy()], axis=1), axis=0)
    docs = _docs(job, chunk)
    rows = pa.array(chunking.row_of(both[:, 0]))
    table = pa.table(
        {"a_rank": docs.column("rank").take(rows), "a_data": docs.column("data").take(rows), "b": both[:, 1]}
    )
    _write_grouped(table, chunking.chunk_of(both[:, 1]), job.pairs, f"{chunk:06d}.parquet")
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


def _similarity(config: DedupConfig, a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Jaccard similarity of each pair: exact (`jaccard`), or estimated by signature agreement."""
    if config.verify == "jaccard":
        return _jaccards(a, b)
    return (_sig_matrix(a, config.num_perm) == _sig_matrix(b, config.num_perm)).mean(axis=1)


def _verify(task: ChunkTask) -> int:
    """The second document's rank and data joined to each pair; the pairs that are duplicates are
    written as edges both ways, to the partitions of their source nodes."""
    job, chunk = task.job, task.chunk.index
    pairs = _read_folder(_p(job.pairs, f"{chunk:06d}"))
    if pairs is None:
        return 0
    docs = _docs(job, chunk)
    rows = pa.array(chunking.row_of(pairs.column("b").to_numpy()))
    a_ranks, b_ranks = pairs.column("a_rank").to_pylist(), docs.column("rank").take(rows).to_pylist()
    edge = np.zeros(len(a_ranks), bool)
    if job.config.exact:
        edge |= np.array([_parse(x)[1] == _parse(y)[1] for x, y in zip(a_ranks, b_ranks)], bool)
    if job.config.near:
        edge |= _similarity(job.config, pairs.column("a_data"), docs.column("data").take(rows)) >= job.config.threshold
    a_ranks = [r for r, e in zip(a_ranks, edge) if e]
    b_ranks = [r for r, e in zip(b_ranks, edge) if e]
    if a_ranks:
        src, dst = a_ranks + b_ranks, b_ranks + a_ranks
        _write_grouped(
            pa.table({"src": pa.array(src, pa.string()), "dst": pa.array(dst, pa.string())}),
            _part_of(src, job.parts),
            job.verify,
            f"{chunk:06d}.parquet",
        )
    return len(a_ranks)


def _propagate(task: PartTask) -> int:
    """One min-label round for one node partition; returns the messages sent (0: stable)."""
    job, part, round_ = task.job, task.part, task.round
    adj = _read_folder(_p(job.verify, f"{part:06d}"))
    if adj is None:
        return 0
    if round_ == 0:
        labels = changed = _first_labels(adj)
    else:
        old = pq.read_table(storage.open_input(_labels_path(job, round_ - 1, part)))
        msgs = _read_folder(_p(job.components, "msgs", f"{round_:04d}", f"{part:06d}"))
        if msgs is None:
            storage.write_parquet(_labels_path(job, round_, part), old)
            return 0
        labels, changed = _lowered(old, msgs)
    storage.write_parquet(_labels_path(job, round_, part), labels.select(["node", "label"]))
    if not changed.num_rows:
        return 0
    return _send(job, part, round_, adj, changed)


def _first_labels(adj: pa.Table) -> pa.Table:
    """Each node's label after round 0: the least of itself and its neighbours."""
    labels = adj.group_by("src").aggregate([("dst", "min")]).rename_columns(["node", "new"])
    return labels.append_column("label", pc.min_element_wise(labels.column("node"), labels.column("new")))


def _lowered(old: pa.Table, msgs: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The partition's labels lowered by the least label sent to each node, and the nodes whose label moved."""
    best = msgs.group_by("node").aggregate([("label", "min")]).rename_columns(["node", "new"])
    labels = old.join(best, "node", join_type="left outer")
    new = pc.coalesce(pc.min_element_wise(labels.column("label"), labels.column("new")), labels.column("label"))
    moved = pc.less(new, labels.column("label")).fill_null(False)
    labels = labels.set_column(labels.column_names.index("label"), "label", new)
    return labels, labels.filter(moved)


def _send(job: Job, part: int, round_: int, adj: pa.Table, changed: pa.Table) -> int:
    """Each moved label to the neighbours of its node, in their partitions' messages of the next round."""
    out = adj.join(changed.select(["node", "label"]), "src", "node", join_type="inner")
    dst = out.column("dst").to_pylist()
    _write_grouped(
        pa.table({"node": out.column("dst"), "label": out.column("label")}),
        _part_of(dst, job.parts),
        _p(job.components, "msgs", f"{round_ + 1:04d}"),
        f"{part:06d}.parquet",
    )
    return out.num_rows


def _cluster_of(node: str, label: str) -> tuple[int, str, str | None]:
    """(node id, survivor id, drop reason) of a document whose final label is `label`."""
    _, text_key, node_id = _parse(node)
    survivor, survivor_key, _ = _parse(label)
    reason = None if node == label else ("exact_duplicate" if text_key == survivor_key else "near_duplicate")
    return node_id, survivor, reason


def _route(task: PartTask) -> int:
    """Send each clustered document's survivor id and reason to its chunk."""
    job, part, round_ = task.job, task.part, task.round
    path = _labels_path(job, round_, part)
    if not storage.exists(path):
        return 0
    labels = pq.read_table(storage.open_input(path))
    ids, clusters, reasons = [], [], []
    for node, label in zip(labels.column("node").to_pylist(), labels.column("label").to_pylist()):
        node_id, survivor, reason = _cluster_of(node, label)
        ids.append(node_id)
        clusters.append(survivor)
        reasons.append(reason)
    nodes = np.array(ids, np.uint64)
    table = pa.table(
        {
            "row": pa.array(chunking.row_of(nodes)),
            "cluster": pa.array(clusters, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    _write_grouped(table, chunking.chunk_of(nodes), job.clusters, f"{part:06d}.parquet")
    return len(ids)


def _clusters(job: Job, chunk: int, rows: int) -> tuple[list, list]:
    """Per row of the chunk: its cluster's survivor id and its drop reason (None for both: no cluster)."""
    cluster = np.full(rows, None, object)
    reason = np.full(rows, None, object)
    results = _read_folder(_p(job.clusters, f"{chunk:06d}"))
    if results is not None:
        idx = results.column("row").to_numpy()
        cluster[idx] = results.column("cluster").to_pylist()
        reason[idx] = results.column("reason").to_pylist()
    return cluster.tolist(), reason.tolist()


def _filter(task: ChunkTask) -> dict:
    """Write the chunk's rows with `duplicate_cluster`, less the duplicates; returns its counts."""
    job, chunk = task.job, task.chunk
    table = chunking.read(DEDUP, chunk)
    cluster, reason = _clusters(job, chunk.index, table.num_rows)
    table = table.append_column("duplicate_cluster", pa.array(cluster, pa.string()))
    drop = pa.array(reason, pa.string())
    kept = table.filter(pc.is_null(drop))
    storage.write_parquet(storage.join(job.out, f"part-{chunk.index:05d}.parquet"), conform(kept, OUTPUT))
    job.drops.write(table.append_column(DROP_REASON, drop).filter(pc.is_valid(drop)), f"part-{chunk.index:05d}")
    counts = Counter(r for r in reason if r is not None)
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
