"""Stream document shards into packed GPT-2 training batches, with exact mid-epoch resume.

Work is split by (shard, row group): each epoch shuffles that list with its own seed and gives
rank r every world_size-th unit. Documents pass through a seeded shuffle buffer, are tokenized,
joined with <|endoftext|> and cut into (batch_size, block_size + 1) windows. `state_dict()` holds
everything needed to continue exactly: epoch, unit, row, buffer, leftover tokens and RNG state.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import torch

from training.tokenizer import EOT


def parquet_files(source: Path | list[Path]) -> list[Path]:
    paths = [Path(p) for p in source] if isinstance(source, list) else [Path(source)]
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.parquet")))
    if not files:
        raise ValueError(f"no Parquet shards in {', '.join(map(str, paths))}")
    return files


class PackedLoader:
    def __init__(self, source, encoding, batch_size: int, block_size: int, shuffle_buffer: int = 256,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        self.files = parquet_files(source)
        self.encoding = encoding
        self.batch_size, self.block_size = batch_size, block_size
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.units = []
        for i, path in enumerate(self.files):
            try:
                metadata = pq.ParquetFile(path).metadata
            except Exception as exc:
                raise ValueError(f"{path}: cannot read Parquet shard: {exc}") from exc
            if "text" not in metadata.schema.names:
                raise ValueError(f"{path}: shard has no 'text' column")
            self.units += [(i, g) for g in range(metadata.num_row_groups) if metadata.row_group(g).num_rows]
        if len(self.units) < world_size:
            raise ValueError(f"{len(self.units)} row groups cannot feed {world_size} ranks")
        self.epoch, self.unit, self.row = 0, 0, 0
        self.buffer: list[str] = []
        self.tokens: list[int] = []
        self.rng = random.Random(seed)
        self._texts: list[str] | None = None  # rows of the current unit, read lazily

    def _epoch_units(self) -> list[tuple[int, int]]:
        units = list(self.units)
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(units)
        return units[self.rank :: self.world_size]

    def _read_unit(self) -> list[str]:
        file_index, group = self._epoch_units()[self.unit]
        return pq.ParquetFile(self.files[file_index]).read_row_group(group, columns=["text"]).column("text").to_pylist()

    def _next_text_from_shards(self) -> str:
        while True:
            if self._texts is None:
                self._texts = self._read_unit()
            if self.row < len(self._texts):
                self.row += 1
                return self._texts[self.row - 1]
            self._texts, self.row = None, 0
            self.unit += 1
            if self.unit == len(self._epoch_units()):
                self.epoch, self.unit = self.epoch + 1, 0

    def _next_document(self) -> str:
        while len(self.buffer) < self.shuffle_buffer:
            self.buffer.append(self._next_text_from_shards())
        i = self.rng.randrange(len(self.buffer))
        self.buffer[i], self.buffer[-1] = self.buffer[-1], self.buffer[i]
        return self.buffer.pop()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        need = self.batch_size * (self.block_size + 1)
        while len(self.tokens) < need:
            self.tokens += self.encoding.encode_ordinary(self._next_document() or "") + [EOT]
        window = torch.tensor(self.tokens[:need], dtype=torch.long).view(self.batch_size, self.block_size + 1)
        self.tokens = self.tokens[need:]
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {
            "epoch": self.epoch, "unit": self.unit, "row": self.row, "buffer": list(self.buffer),
            "tokens": list(self.tokens), "rng": [version, list(internal), gauss], "seed": self.seed,
            "rank": self.rank, "world_size": self.world_size, "files": [p.name for p in self.files],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["files"] != [p.name for p in self.files] or state["world_size"] != self.world_size:
            raise ValueError("loader state was saved for other shards or another number of ranks")
        self.epoch, self.unit, self.row = state["epoch"], state["unit"], state["row"]
        self.buffer, self.tokens = list(state["buffer"]), list(state["tokens"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self._texts = None if self.row == 0 else self._read_unit()
