"""Train GPT-2 on document shards (nanoGPT-style loop): AdamW, warmup + cosine decay, clipping,
bf16 autocast on GPU, checkpoints that resume exactly (model, optimizer, step, loader state)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.data import PackedLoader
from training.model import build_model
from training.tokenizer import gpt2_encoding
from webtext.config import TrainConfig


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) at each log line
    tokens_per_s: float = 0.0
    sample: str = ""
    checkpoint: Path | None = None


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (config.learning_rate - config.min_learning_rate)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load checkpoint (truncated or not a webtext checkpoint): {exc}") from exc


def save_checkpoint(path: Path, payload: dict) -> None:
    partial = path.with_suffix(".tmp")
    torch.save(payload, partial)
    partial.replace(path)


def train(config: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Train to `config.max_steps` (or stop after step `stop_at`, as an interruption would), resuming
    from `out_dir/ckpt.pt` when it exists; the schedule always follows max_steps."""
    if config.shards is None:
        raise ValueError("TrainConfig.shards is not set")
    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    encoding = gpt2_encoding()
    model = build_model(config.preset, config.block_size).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.95), fused=device.startswith("cuda"),
    )
    loader = PackedLoader(config.shards, encoding, config.batch_size, config.block_size, config.shuffle_buffer, config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "ckpt.pt"
    step = 0
    if checkpoint.exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        step = state["step"]
        print(f"resumed from {checkpoint} at step {step}")
    print(f"model: {config.preset}, {model.num_parameters() / 1e6:.2f}M parameters; device {device}", flush=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    result = TrainResult()
    first_step = step
    tokens_per_step = config.batch_size * config.block_size
    started, window_start, window_steps = time.perf_counter(), time.perf_counter(), 0
    with open(out_dir / "metrics.jsonl", "a") as metrics:
        while step < min(config.max_steps, stop_at or config.max_steps):
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = (t.to(device) for t in loader.next_batch())
            with autocast:
                _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_steps += 1
            if step % config.log_every == 0 or step == config.max_steps:
                elapsed = time.perf_counter() - window_start
                tokens_per_s = window_steps * tokens_per_step / elapsed
                record = {"step": step, "loss": round(loss.item(), 4), "lr": lr, "tokens_per_s": round(tokens_per_s)}
                metrics.write(json.dumps(record) + "\n")
                print(f"step {step:>6}  loss {record['loss']:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s", flush=True)
                result.losses.append((step, record["loss"]))
                window_start, window_steps = time.perf_counter(), 0
    result.tokens_per_s = (step - first_step) * tokens_per_step / max(time.perf_counter() - started, 1e-9)
    save_checkpoint(checkpoint, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
        "loader": loader.state_dict(), "config": json.loads(config.model_dump_json()),
    })
    result.checkpoint = checkpoint
    model.eval()
    prompt = torch.tensor([encoding.encode_ordinary(config.sample_prompt)], device=device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    sample = model.generate(prompt, config.sample_tokens, generator=generator)[0].tolist()
    result.sample = encoding.decode(sample)
    print(f"sample: {result.sample!r}", flush=True)
    return result
