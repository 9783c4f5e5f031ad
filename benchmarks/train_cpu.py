"""CPU training throughput: `training.train.train` vs a bare loop of the same model and optimizer, and the
loaders' tokens/s from Parquet (tokenizing on the fly) and from pre-tokenized token shards.

    .venv/bin/python benchmarks/train_cpu.py [--steps 40] [--rounds 3]

Runs are alternated (trainer, bare, trainer, bare, ...) and medians compared, since the machine is
shared. Documents are WikiText-2 paragraphs from ../shared/data/evalsets when present, else generated.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from training.data import PackedLoader
from training.model import build_model
from training.tokens import tokenize_shards
from training.train import adamw, learning_rate, train
from webtext.core.config import TrainConfig

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "evalsets" / "wikitext-2.test.tokens"


def documents() -> list[str]:
    if WIKITEXT.exists():
        paragraphs = [p.strip() for p in WIKITEXT.read_text().split("\n") if len(p.split()) > 20]
        return paragraphs * 4
    rng = random.Random(0)
    words = "the council voted to open a new library branch near the river and residents welcomed it".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(50, 400))) for _ in range(8000)]


def write_shards(folder: Path, docs: list[str], per_shard: int = 2000) -> Path:
    folder.mkdir(parents=True)
    for s in range(0, len(docs), per_shard):
        chunk = docs[s : s + per_shard]
        table = pa.table({"id": [f"{s + i}" for i in range(len(chunk))], "text": chunk})
        pq.write_table(table, folder / f"shard-{s // per_shard:05d}.parquet", row_group_size=500)
    return folder


def bare_loop(config: TrainConfig, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """The same model, AdamW groups, schedule and clipping, on batches already in memory: tokens/s of each
    window of `log_every` steps, as the trainer logs them."""
    torch.manual_seed(config.seed)
    model = build_model(config.preset, config.block_size)
    optimizer = adamw(model, config)
    rates, started = [], time.perf_counter()
    for step, (x, y) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % config.log_every == 0:
            loss.item()
            rates.append(config.log_every * config.batch_size * config.block_size / (time.perf_counter() - started))
            started = time.perf_counter()
    return rates


def trainer_windows(config: TrainConfig) -> list[float]:
    """tokens/s of each log window of a real `train()` run (from its metrics.jsonl)."""
    train(config)
    lines = (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()
    return [record["tokens_per_s"] for record in map(json.loads, lines) if "tokens_per_s" in record]


def loader_rate(location, seconds: float = 5.0) -> float:
    loader = PackedLoader(location, batch_size=8, block_size=1024, seed=0)
    loader.next_batch()
    tokens, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        x, _ = loader.next_batch()
        tokens += x.numel()
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=4, help="steps per timed window; the first is warm-up")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = write_shards(tmp / "shards", documents())
        tokenize_shards(shards, tmp / "tokens", workers=2)
        base = dict(shards=shards, preset="tiny", max_steps=args.steps, log_every=args.window, sample_tokens=0)
        plain = TrainConfig(**base, val_fraction=0.0, checkpoint_every=args.steps)  # one checkpoint, at the end
        loader = PackedLoader(shards, plain.batch_size, plain.block_size, seed=plain.seed)
        batches = [loader.next_batch() for _ in range(args.steps)]
        trainer, bare = [], []
        for r in range(args.rounds):
            trainer += trainer_windows(plain.model_copy(update={"out_dir": tmp / f"t{r}"}))[1:]  # first: start-up
            bare += bare_loop(plain, batches)[1:]
        parquet_rate, token_rate = [], []
        for _ in range(args.rounds):
            parquet_rate.append(loader_rate(shards))
            token_rate.append(loader_rate(tmp / "tokens"))
    med = statistics.median
    print(
        f"\ntiny preset, batch {plain.batch_size} x block {plain.block_size}, {args.steps} steps, {args.rounds} alternated rounds, "
        f"median of {args.window}-step windows after the first, {torch.get_num_threads()} torch threads"
    )
    print(
        f"trainer (Parquet loader, checkpoint at the end): {med(trainer):>10,.0f} tok/s  windows {[round(t) for t in trainer]}"
    )
    print(
        f"bare loop (same model/optimizer, batches in RAM): {med(bare):>10,.0f} tok/s  windows {[round(t) for t in bare]}"
    )
    print(f"ratio trainer / bare: {med(trainer) / med(bare):.2f}")
    print(f"loader from Parquet (tokenizing, 8 x 1024): {med(parquet_rate):>12,.0f} tok/s")
    print(f"loader from token shards (8 x 1024):        {med(token_rate):>12,.0f} tok/s")
    print(f"ratio token shards / Parquet: {med(token_rate) / med(parquet_rate):.1f}")


if __name__ == "__main__":
    main()
