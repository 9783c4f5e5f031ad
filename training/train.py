"""Train GPT-2 on shards (nanoGPT-style loop), from one CPU to DDP under torchrun or Ray Train.

AdamW (fused on GPU), warmup + cosine decay, gradient accumulation, clipping, bf16 autocast on GPU,
optional torch.compile. Every `checkpoint_every` steps and at the end, rank 0 writes `ckpt.pt`
atomically through the storage layer (model, optimizer, step, RNG and every rank's loader state), so a
run killed at any moment loses at most that many steps and resumes on exactly the same loss curve.
`metrics.jsonl` gets one flushed line per log step and per validation; `loss.png` plots both.

Run: `webtext train CONFIG.yaml`, `torchrun --nproc-per-node N -m webtext.cli train CONFIG.yaml`, or
`webtext train CONFIG.yaml --ray-workers N` (Ray Train, multi-node; out_dir must be shared storage).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from training.data import EmptySplitError, PackedLoader, TrainStream, open_source
from training.model import build_model
from training.tokenizer import gpt2_encoding
from webtext.core import storage
from webtext.core.config import TrainConfig
from webtext.core.stage import InputError

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"
# bf16 dense peak, TFLOP/s, for MFU when `peak_tflops` is not set
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


class CheckpointError(InputError):
    """A checkpoint that cannot be read: truncated, or not written by webtext."""


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) at each log line
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_s: float = 0.0
    mfu: float | None = None
    sample: str = ""
    checkpoint: str | None = None


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (
        config.learning_rate - config.min_learning_rate
    )


def load_checkpoint(location) -> dict:
    try:
        return torch.load(io.BytesIO(storage.read_bytes(location)), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{storage.normalize(location)}: cannot load checkpoint (truncated or not a webtext "
            f"checkpoint): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def save_checkpoint(location, payload: dict) -> None:
    """Atomic: the storage layer writes a temporary file and renames it (an object store publishes on completion)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(location, buffer.getvalue())


class Metrics:
    """metrics.jsonl, one flushed line per record. On resume, lines after the checkpoint's step are dropped
    (they would be logged again). Local files are appended to; object stores get the whole file rewritten."""

    def __init__(self, out_dir: str, resume_step: int, enabled: bool):
        self.location, self.enabled, self.records = storage.join(out_dir, METRICS), enabled, []
        if not enabled:
            return
        if storage.exists(self.location):
            lines = storage.read_text(self.location).splitlines()
            self.records = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= resume_step]
        storage.write_text(self.location, "".join(json.dumps(r) + "\n" for r in self.records))
        # storage has no append; a local log is appended to (and flushed) in place
        self.file = open(self.location, "a") if storage.is_local(self.location) else None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        else:
            storage.write_text(self.location, "".join(json.dumps(r) + "\n" for r in self.records))

    def close(self) -> None:
        if self.enabled and self.file:
            self.file.close()


def plot_losses(records: list[dict], location: str) -> None:
    """loss.png: training loss per log step and validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train_points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_points = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    for points, label, style in ((train_points, "train", "-"), (val_points, "validation", "o-")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(location, buffer.getvalue())


def _distributed(config: TrainConfig) -> tuple[int, int, str, bool]:
    """(rank, world size, device, whether we own the process group): joins torchrun's or Ray Train's group."""
    owned = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
        owned = True
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    device = config.device
    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    return rank, world, device, owned


def _peak_flops(config: TrainConfig, device: str) -> float | None:
    if config.peak_tflops:
        return config.peak_tflops * 1e12
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        return next((tf * 1e12 for gpu, tf in PEAK_TFLOPS.items() if gpu in name), None)
    return None


def _validate(model, source, config: TrainConfig, rank: int, world: int, device: str, autocast) -> float | None:
    """Mean loss on the first `val_batches` batches of the held-out split (the same batches every time)."""
    loader = PackedLoader(
        source, config.batch_size, config.block_size, config.seed, rank, world, "val", config.val_fraction
    )
    total = torch.zeros(2, device=device)
    model.eval()
    with torch.no_grad():
        try:
            for _ in range(config.val_batches):
                x, y = (t.to(device) for t in loader.next_batch())
                with autocast:
                    _, loss = model(x, y)
                total += torch.stack([loss.float(), torch.ones((), device=device)])
        except EmptySplitError:
            pass  # this rank's units hold no held-out document; the others' count
    model.train()
    if world > 1:
        dist.all_reduce(total)
    return (total[0] / total[1]).item() if total[1] else None


def train(config: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Train to `config.max_steps` (or stop after step `stop_at`, as an interruption would), resuming
    from `out_dir/ckpt.pt` when it exists; the schedule always follows max_steps."""
    if config.shards is None:
        raise InputError("TrainConfig.shards is not set")
    rank, world, device, owned_group = _distributed(config)
    try:
        return _train(config, stop_at, rank, world, device)
    finally:
        if owned_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, stop_at: int | None, rank: int, world: int, device: str) -> TrainResult:
    master = rank == 0
    torch.manual_seed(config.seed)
    source = open_source(config.shards)
    model = build_model(config.preset, config.block_size).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
        fused=device.startswith("cuda"),
    )
    out_dir = storage.normalize(config.out_dir)
    checkpoint = storage.join(out_dir, CHECKPOINT)
    step, loader_state = 0, None
    if master and storage.exists(out_dir):
        storage.delete_temporaries(out_dir)  # partial files of a writer killed mid-write
    if storage.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"{checkpoint}: weights do not fit preset {config.preset!r} with block_size "
                f"{config.block_size}: {str(exc).splitlines()[0][:200]}"
            ) from exc
        if "optimizer" in state:  # a training checkpoint: resume exactly
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            if len(state["loader"]) != world:
                raise InputError(
                    f"{checkpoint}: written by {len(state['loader'])} ranks, this run has {world}; resume with as many"
                )
            step, loader_state = state["step"], state["loader"][rank]
        if master:
            print(
                f"resumed from {checkpoint} at step {step}" if step else f"starting from the weights in {checkpoint}",
                flush=True,
            )
    stream = TrainStream(
        source,
        config.batch_size,
        config.block_size,
        config.seed,
        rank,
        world,
        config.num_workers,
        config.val_fraction,
        loader_state,
    )
    batches = iter(
        torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=config.num_workers, pin_memory=device.startswith("cuda")
        )
    )
    raw_model = model
    if config.compile:
        model = torch.compile(model)
    if world > 1:
        model = DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    flops_per_token, peak = raw_model.flops_per_token(), _peak_flops(config, device)
    tokens_per_step = config.batch_size * config.block_size * config.grad_accum_steps * world
    checkpoint_every = config.checkpoint_every or max(1, config.max_steps // 10)
    val_every = config.val_every or checkpoint_every
    end = min(config.max_steps, stop_at or config.max_steps)
    metrics = Metrics(out_dir, step, enabled=master)
    if master:
        print(
            f"model: {config.preset}, {raw_model.num_parameters() / 1e6:.2f}M parameters; device {device}, {world} rank(s); "
            f"{tokens_per_step:,} tokens/step; checkpoint every {checkpoint_every} steps",
            flush=True,
        )
    progress = _progress(step, config.max_steps) if master else None
    trace = [] if config.trace_data else None
    result, first_step = TrainResult(checkpoint=checkpoint), step
    started = window_start = time.perf_counter()
    window_steps, val_enabled = 0, config.val_fraction > 0

    def save() -> None:
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, stream.state_dict())
        else:
            states = [stream.state_dict()]
        if master:
            save_checkpoint(
                checkpoint,
                {
                    "model": raw_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "loader": states,
                    "rng": torch.get_rng_state(),
                    "model_config": dataclasses.asdict(raw_model.config),
                    "config": json.loads(config.model_dump_json()),
                },
            )

    while step < end:
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(config.grad_accum_steps):
            x, y, logical, state, opened = next(batches)
            stream.record(logical, state)
            if trace is not None:
                trace += [[rank * stream.workers + logical, *unit] for unit in opened]
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = micro == config.grad_accum_steps - 1
            with model.no_sync() if world > 1 and not sync else nullcontext(), autocast:
                _, loss = model(x, y)
                loss = loss / config.grad_accum_steps
            loss.backward()
            loss_sum += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        if step % config.log_every == 0 or step == config.max_steps:
            elapsed = time.perf_counter() - window_start
            tokens_per_s = window_steps * tokens_per_step / elapsed
            record = {"step": step, "loss": round(loss_sum.item(), 4), "lr": lr, "tokens_per_s": round(tokens_per_s)}
            if peak:
                record["mfu"] = round(flops_per_token * tokens_per_s / world / peak, 4)
            eta = (config.max_steps - step) * elapsed / window_steps
            metrics.write(record)
            result.losses.append((step, record["loss"]))
            result.tokens_per_s = tokens_per_s
            if master:
                mfu = f"  mfu {record['mfu']:.1%}" if peak else ""
                _say(
                    progress,
                    f"step {step:>6}  loss {record['loss']:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s{mfu}  "
                    f"eta {_duration(eta)}",
                )
            window_start, window_steps = time.perf_counter(), 0
        if progress is not None:  # the last logged loss and tokens/s (reading every step's loss would sync a GPU)
            if result.losses:
                progress.set_postfix_str(
                    f"loss {result.losses[-1][1]:.3f}, {result.tokens_per_s:,.0f} tok/s", refresh=False
                )
            progress.update(1)
        if val_enabled and (step % val_every == 0 or step == config.max_steps):
            val_loss = _validate(raw_model, source, config, rank, world, device, autocast)
            if val_loss is None:
                val_enabled = False
                if master:
                    _say(progress, f"no held-out documents (val_fraction {config.val_fraction}): validation is off")
            else:
                metrics.write({"step": step, "val_loss": round(val_loss, 4)})
                result.val_losses.append((step, round(val_loss, 4)))
                if master:
                    _say(progress, f"step {step:>6}  val loss {val_loss:.4f}")
        if step % checkpoint_every == 0 or step == end:
            save()
    if progress is not None:
        progress.close()
    if step == first_step and not storage.exists(checkpoint):
        save()
    elapsed = max(time.perf_counter() - started, 1e-9)
    result.tokens_per_s = (step - first_step) * tokens_per_step / elapsed
    result.mfu = flops_per_token * result.tokens_per_s / world / peak if peak else None
    if trace is not None:
        digest = hashlib.sha256(b"".join(p.detach().cpu().float().numpy().tobytes() for p in raw_model.parameters()))
        storage.write_json(
            storage.join(out_dir, f"data-rank{rank}.json"), {"units": trace, "weights_sha256": digest.hexdigest()}
        )
    metrics.close()
    if master:
        plot_losses(metrics.records, storage.join(out_dir, "loss.png"))
        if config.sample_tokens:
            encoding = gpt2_encoding()
            raw_model.eval()
            prompt = torch.tensor([encoding.encode_ordinary(config.sample_prompt)], device=device)
            generator = torch.Generator(device=device).manual_seed(config.seed)
            result.sample = encoding.decode(
                raw_model.generate(prompt, config.sample_tokens, generator=generator)[0].tolist()
            )
            print(f"sample: {result.sample!r}", flush=True)
    return result


def _progress(step: int, total: int):
    """A tqdm bar on a terminal (loss, tokens/s, ETA); nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)


def _say(progress, line: str) -> None:
    if progress is not None:
        progress.write(line)
    else:
        print(line, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


if __name__ == "__main__":  # python -m training.train CONFIG.yaml (what `webtext train` runs)
    from webtext.core.config import load_config

    train(load_config(sys.argv[1], TrainConfig))
