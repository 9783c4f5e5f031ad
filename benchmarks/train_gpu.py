"""GPU throughput of the gpt2 (124M) preset: tokens/s and MFU from the token-shard loader, with and
without torch.compile (alternated), on whatever CUDA device is present.

    .venv/bin/python benchmarks/train_gpu.py [--steps 60] [--batch 16] [--accum 1]

MFU = tokens/s x (6N + 12 L H Q T) / peak (H100/H200 bf16 dense 989 TFLOP/s; see training/train.py).
The figure is the last log window (steady state, after compilation). Needs a GPU; exits otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from training.tokens import tokenize_shards
from training.train import train
from webtext.core.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark measures GPU throughput")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "docs").mkdir()
        tokens_needed = args.steps * args.batch * args.accum * 1025 * 2
        for s in range(8):
            texts = [" ".join(rng.choices(words, k=600)) for _ in range(tokens_needed // (8 * 1200) + 1)]
            pq.write_table(
                pa.table({"id": [f"{s}-{i}" for i in range(len(texts))], "text": texts}),
                tmp / "docs" / f"shard-{s}.parquet",
                row_group_size=64,
            )
        tokenize_shards(tmp / "docs", tmp / "tokens")
        results = {False: [], True: []}
        for r in range(args.rounds):
            for compiled in (False, True):
                config = TrainConfig(
                    shards=str(tmp / "tokens"),
                    out_dir=tmp / f"run-{r}-{compiled}",
                    preset="gpt2",
                    block_size=1024,
                    batch_size=args.batch,
                    grad_accum_steps=args.accum,
                    max_steps=args.steps,
                    log_every=max(1, args.steps // 3),
                    learning_rate=6e-4,
                    min_learning_rate=6e-5,
                    warmup_steps=10,
                    val_fraction=0.0,
                    checkpoint_every=args.steps,
                    compile=compiled,
                    sample_tokens=0,
                )
                train(config)
                last = [
                    json.loads(line)
                    for line in (tmp / f"run-{r}-{compiled}" / "metrics.jsonl").read_text().splitlines()
                ][-1]
                results[compiled].append((last["tokens_per_s"], last.get("mfu")))
    print(
        f"\n{torch.cuda.get_device_name()}, gpt2 124M, batch {args.batch} x 1024 x accum {args.accum}, bf16, fused AdamW, "
        "token shards"
    )
    for compiled, runs in results.items():
        print(
            f"torch.compile={compiled}: "
            + ", ".join(f"{t:,.0f} tok/s MFU {m if m is None else f'{m:.1%}'}" for t, m in runs)
        )

    def best(runs):
        return max(t for t, _ in runs)

    print(f"ratio compiled / eager: {best(results[True]) / best(results[False]):.2f}")


if __name__ == "__main__":
    main()
