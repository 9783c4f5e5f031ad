"""Stream shards into packed GPT-2 training batches, split disjointly by consumer, with exact resume.

A source is either document shards (a folder with `manifest.json` + `data/*.parquet`, or a plain
folder of Parquet files with a `text` column) or token shards written by `training.tokens`
(`tokens.json` + uint16 `.bin` files with a `.idx` index). Either way the work is a list of units
(a Parquet row group, or a run of documents of a token file). Each epoch shuffles the units with its
own seed and consumer c of n (n = ranks x DataLoader workers) takes every n-th one, so consumers
never read the same document in the same epoch. A unit's documents (those of the requested split:
a document is held out for validation when the hash of its id falls below `val_fraction`) are put
in a seeded order, joined with <|endoftext|> and cut into (batch_size, block_size + 1) windows.
The state (epoch, unit, token offset) is three integers, so resuming is exact and cheap.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
import xxhash

from training.tokenizer import EOT, gpt2_encoding
from webtext.core import manifest, storage
from webtext.core.stage import InputError

TOKENS_INDEX = "tokens.json"
TOKENS_FORMAT = "webtext-tokens-1"
SPLITS = ("train", "val")


class EmptySplitError(InputError):
    """A consumer whose units hold no document of the split it reads (e.g. a tiny held-out split)."""


def document_hashes(keys) -> np.ndarray:
    """64-bit hashes of document ids (or texts): the held-out split is every hash below a threshold."""
    return np.fromiter((xxhash.xxh64_intdigest((k or "").encode()) for k in keys), dtype=np.uint64, count=len(keys))


def in_split(hashes: np.ndarray, split: str, val_fraction: float) -> np.ndarray:
    held_out = hashes < np.uint64(min(int(val_fraction * 2**64), 2**64 - 1))
    return held_out if split == "val" else ~held_out


@dataclass
class Source:
    """The files of a shards location and its units (file index, row group, first doc, end doc); token
    shards keep their source's row groups as units, so both kinds give the same batches."""

    location: str
    kind: str  # "parquet" | "tokens"
    files: list[str]
    units: list[tuple[int, int, int, int]]
    key_column: str = "id"

    @property
    def fingerprint(self) -> str:
        """Names the file list in loader states, so a state is never applied to other shards."""
        return hashlib.sha1("\n".join(storage.name(f) for f in self.files).encode()).hexdigest()[:16]


def open_source(location) -> Source:
    """Find what a shards location holds; bad or inconsistent input raises one line naming it."""
    loc = storage.normalize(location)
    if storage.is_dir(loc) and storage.exists(storage.join(loc, TOKENS_INDEX)):
        return _token_source(loc)
    if storage.is_dir(loc) and storage.exists(storage.join(loc, manifest.MANIFEST)):
        files = manifest.shard_files(loc)
    else:
        files = storage.parquet_files(loc)
    units, key_columns = [], set()
    for i, path in enumerate(files):
        try:
            metadata = storage.parquet_metadata(path)
        except Exception as exc:
            raise InputError(f"{path}: cannot read Parquet shard: {exc}") from exc
        names = metadata.schema.names
        if "text" not in names:
            raise InputError(f"{path}: shard has no 'text' column")
        key_columns.add("id" if "id" in names else "text")
        units += [(i, g, 0, 0) for g in range(metadata.num_row_groups) if metadata.row_group(g).num_rows]
    if len(key_columns) > 1:
        raise InputError(f"{loc}: some shards have an 'id' column and some do not")
    return Source(loc, "parquet", files, units, key_columns.pop())


def _token_source(loc: str) -> Source:
    index = storage.read_json(storage.join(loc, TOKENS_INDEX))
    if index.get("format") != TOKENS_FORMAT:
        raise InputError(
            f"{storage.join(loc, TOKENS_INDEX)}: format {index.get('format')!r}, expected {TOKENS_FORMAT!r}"
        )
    files, units = [], []
    for i, entry in enumerate(index["files"]):
        path = storage.join(loc, entry["file"])
        if not storage.exists(path) or storage.size(path) != 2 * entry["tokens"]:
            raise InputError(f"{path}: missing or not {entry['tokens']} tokens long as {TOKENS_INDEX} says")
        files.append(path)
        bounds = np.cumsum([0, *entry["groups"]]).tolist()
        units += [(i, g, a, b) for g, (a, b) in enumerate(zip(bounds, bounds[1:])) if b > a]
    if not units:
        raise InputError(f"{loc}: token shards hold no documents")
    return Source(loc, "tokens", files, units)


def read_token_index(bin_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, hashes) of a token file: document d is tokens offsets[d]..offsets[d+1] (EOT included)."""
    with np.load(io.BytesIO(storage.read_bytes(bin_path[: -len(".bin")] + ".idx")), allow_pickle=False) as index:
        return index["offsets"], index["hashes"]


class PackedLoader:
    """Consumer `rank` of `world_size` over a source: `next_batch()` gives (x, y) with y = x shifted by one."""

    def __init__(
        self,
        source,
        batch_size: int,
        block_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        split: str = "train",
        val_fraction: float = 0.0,
    ):
        self.source = source if isinstance(source, Source) else open_source(source)
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, not {split!r}")
        if len(self.source.units) < world_size:
            raise InputError(
                f"{self.source.location}: {len(self.source.units)} units (row groups or document runs) "
                f"cannot feed {world_size} consumers (ranks x workers); write smaller row groups"
            )
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.split, self.val_fraction = split, val_fraction
        self.epoch, self.unit, self.offset = 0, 0, 0
        self.opened: list[list[int]] = []  # (epoch, *unit) of each unit read, for tracing
        self._flat: np.ndarray | None = None  # token stream of the current unit
        self._indexes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._units: tuple[int, list] = (-1, [])  # (epoch, this consumer's units in that epoch)

    def _epoch_units(self) -> list[tuple[int, int, int, int]]:
        if self._units[0] != self.epoch:
            units = list(self.source.units)
            np.random.default_rng([self.seed, self.epoch]).shuffle(units)
            self._units = (self.epoch, units[self.rank :: self.world_size])
        return self._units[1]

    def _unit_tokens(self) -> np.ndarray:
        """The current unit's documents of our split, in a seeded order, each followed by EOT."""
        unit = self._epoch_units()[self.unit]
        file_index, group, a, b = unit
        path = self.source.files[file_index]
        if self.source.kind == "parquet":
            with storage.open_input(path) as f:
                columns = ["text"] if self.source.key_column == "text" else ["text", "id"]
                table = pq.ParquetFile(f).read_row_group(group, columns=columns)
            texts = table.column("text").to_pylist()
            keep = np.flatnonzero(
                in_split(
                    document_hashes(table.column(self.source.key_column).to_pylist()), self.split, self.val_fraction
                )
            )
            docs = gpt2_encoding().encode_ordinary_batch([texts[i] or "" for i in keep])
            docs = [np.array(d + [EOT], dtype=np.uint16) for d in docs]
        else:
            if file_index not in self._indexes:
                if len(self._indexes) >= 8:  # a few files' indexes, not the corpus's, per consumer
                    self._indexes.pop(next(iter(self._indexes)))
                self._indexes[file_index] = read_token_index(path)
            offsets, hashes = self._indexes[file_index]
            start, stop = int(offsets[a]), int(offsets[b])
            with storage.open_input(path) as f:
                f.seek(2 * start)
                block = np.frombuffer(f.read(2 * (stop - start)), dtype=np.uint16)
            keep = np.flatnonzero(in_split(hashes[a:b], self.split, self.val_fraction))
            docs = [block[offsets[a + i] - start : offsets[a + i + 1] - start] for i in keep]
        order = np.random.default_rng([self.seed, self.epoch, file_index, group]).permutation(len(docs))
        self.opened.append([self.epoch, *unit])
        return np.concatenate([docs[i] for i in order]) if docs else np.zeros(0, dtype=np.uint16)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        need = self.batch_size * (self.block_size + 1)
        pieces, have, empty_units = [], 0, 0
        while have < need:
            if self._flat is None:
                self._flat = self._unit_tokens()
            piece = self._flat[self.offset : self.offset + need - have]
            pieces.append(piece)
            have += len(piece)
            self.offset += len(piece)
            empty_units = 0 if len(piece) else empty_units + 1
            if self.offset >= len(self._flat):
                self._flat, self.offset, self.unit = None, 0, self.unit + 1
                if self.unit == len(self._epoch_units()):
                    self.epoch, self.unit = self.epoch + 1, 0
            if empty_units > len(self._epoch_units()) + 1:
                raise EmptySplitError(
                    f"{self.source.location}: consumer {self.rank} of {self.world_size} finds no "
                    f"{self.split} documents (val_fraction {self.val_fraction})"
                )
        window = torch.from_numpy(np.concatenate(pieces).astype(np.int64)).view(self.batch_size, self.block_size + 1)
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "unit": self.unit,
            "offset": self.offset,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "split": self.split,
            "source": self.source.fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("source", "world_size", "rank", "split", "seed"):
            if state.get(key) != mine[key]:
                raise InputError(
                    f"loader state was saved with {key} {state.get(key)!r}, this run has {mine[key]!r} "
                    "(other shards, seed, or number of ranks x workers)"
                )
        self.epoch, self.unit, self.offset = state["epoch"], state["unit"], state["offset"]
        self._flat = None if self.offset == 0 else self._unit_tokens()


class TrainStream(torch.utils.data.IterableDataset):
    """The training stream of one rank through a DataLoader: worker w of W is consumer rank·W + w.

    A DataLoader hands out batches from its workers in turn, so after n batches the next comes from
    worker n mod W. On resume, physical worker w plays logical worker (w + n) mod W, which keeps the
    order exactly. Each item carries its worker's state after the batch, for the checkpoint.
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        block_size: int,
        seed: int,
        rank: int,
        world_size: int,
        workers: int,
        val_fraction: float,
        state: dict | None = None,
    ):
        self.args = (source, batch_size, block_size, seed)
        self.rank, self.world_size, self.workers, self.val_fraction = rank, world_size, max(1, workers), val_fraction
        self.batches = state["batches"] if state else 0
        self.states = state["workers"] if state else [self._loader(w).state_dict() for w in range(self.workers)]
        if len(self.states) != self.workers:
            raise InputError(
                f"checkpoint was written with {len(self.states)} DataLoader workers per rank, "
                f"this run has num_workers {self.workers}; use the same number to resume"
            )

    def _loader(self, logical: int) -> PackedLoader:
        return PackedLoader(
            *self.args,
            rank=self.rank * self.workers + logical,
            world_size=self.world_size * self.workers,
            split="train",
            val_fraction=self.val_fraction,
        )

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        logical = ((info.id if info else 0) + self.batches) % self.workers
        loader = self._loader(logical)
        loader.load_state_dict(self.states[logical])
        while True:
            x, y = loader.next_batch()
            opened, loader.opened = loader.opened, []
            yield x, y, logical, loader.state_dict(), opened

    def record(self, logical: int, state: dict) -> None:
        """Note a consumed batch (called by the training loop with what the item carried)."""
        self.states[logical] = state
        self.batches += 1

    def state_dict(self) -> dict:
        return {"batches": self.batches, "workers": list(self.states)}
