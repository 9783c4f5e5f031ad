"""Pre-tokenize document shards into token shards: what a GPU run reads instead of tokenizing on the fly.

For each Parquet shard, `tokens-NNNNN.bin` holds its documents' GPT-2 tokens as raw uint16, each
document followed by <|endoftext|>, and `tokens-NNNNN.idx` (NumPy .npz) holds each document's start
offset and the hash of its id (the held-out split is computed from it, as for Parquet). `tokens.json`,
written last, lists the files with their documents per row group: the loader keeps the source's row
groups as units, so it gives exactly the batches the Parquet loader gives, without the tokenizer.
Shards are independent tasks (local processes, or Ray tasks on a cluster); a rerun skips finished ones.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow.parquet as pq

from training.data import TOKENS_FORMAT, TOKENS_INDEX, document_hashes, open_source, read_token_index
from training.tokenizer import EOT, gpt2_encoding
from webtext.core import storage
from webtext.core.stage import InputError


def tokenize_file(src: str, out_dir: str, name: str) -> dict:
    """One Parquet shard -> `name.bin` + `name.idx` under out_dir; returns its tokens.json entry."""
    bin_path, idx_path = storage.join(out_dir, f"{name}.bin"), storage.join(out_dir, f"{name}.idx")
    with storage.open_input(src) as f:
        parquet = pq.ParquetFile(f)
        key = "id" if "id" in parquet.schema_arrow.names else "text"
        groups = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
        if storage.exists(idx_path) and storage.exists(bin_path):  # finished by an earlier run
            offsets, _ = read_token_index(bin_path)
            return _entry(name, src, offsets, groups)
        encoding, offsets, hashes = gpt2_encoding(), [np.zeros(1, dtype=np.int64)], []
        with storage.atomic_output(bin_path) as out:
            for g in range(parquet.num_row_groups):
                table = parquet.read_row_group(g, columns=sorted({"text", key}))
                hashes.append(document_hashes(table.column(key).to_pylist()))
                docs = encoding.encode_ordinary_batch([t or "" for t in table.column("text").to_pylist()])
                for doc in docs:
                    doc.append(EOT)
                flat = np.fromiter((t for doc in docs for t in doc), dtype=np.uint16)
                out.write(flat.tobytes())
                offsets.append(offsets[-1][-1] + np.cumsum([len(doc) for doc in docs], dtype=np.int64))
    offsets_all = np.concatenate(offsets)
    buffer = io.BytesIO()
    np.savez(buffer, offsets=offsets_all, hashes=np.concatenate(hashes) if hashes else np.zeros(0, np.uint64))
    storage.write_bytes(idx_path, buffer.getvalue())
    return _entry(name, src, offsets_all, groups)


def _entry(name: str, src: str, offsets: np.ndarray, groups) -> dict:
    """A token file's line in the token manifest."""
    return {
        "file": f"{name}.bin",
        "source": storage.name(src),
        "docs": len(offsets) - 1,
        "tokens": int(offsets[-1]),
        "groups": groups,
    }


def tokenize_shards(shards, out, workers: int | None = None, use_ray: bool = False) -> dict:
    """Every shard of `shards` (manifest or plain Parquet folder) -> token shards in `out`; returns the index."""
    source = open_source(shards)
    if source.kind != "parquet":
        raise InputError(f"{source.location}: already token shards")
    out = storage.normalize(out)
    storage.makedirs(out)
    jobs = [(path, out, f"tokens-{i:05d}") for i, path in enumerate(source.files)]
    if use_ray:
        import ray

        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS") or "local")
        task = ray.remote(num_cpus=1)(tokenize_file)
        entries = ray.get([task.remote(*job) for job in jobs])  # one small dict per shard
    elif (workers or os.cpu_count() or 1) == 1 or len(jobs) == 1:
        entries = [tokenize_file(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(min(workers or os.cpu_count(), len(jobs))) as pool:
            entries = list(pool.map(tokenize_file, *zip(*jobs)))
    index = {
        "format": TOKENS_FORMAT,
        "dtype": "uint16",
        "eot": EOT,
        "source": source.location,
        "documents": sum(e["docs"] for e in entries),
        "tokens": sum(e["tokens"] for e in entries),
        "files": entries,
    }
    storage.write_json(storage.join(out, TOKENS_INDEX), index)
    print(f"{out}: {index['tokens']:,} tokens from {index['documents']:,} documents in {len(entries)} token shard(s)")
    return index
