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

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from training.checkpoint import CHECKPOINT, restore_checkpoint, save_checkpoint, training_checkpoint
from training.data import EmptySplitError, PackedLoader, Source, TrainStream, open_source
from training.model import GPT, build_model
from training.tokenizer import gpt2_encoding
from webtext.core import storage
from webtext.core.config import TrainConfig
from webtext.core.stage import InputError

METRICS = "metrics.jsonl"
# bf16 dense peak, TFLOP/s, for MFU when `peak_tflops` is not set
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


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


@dataclass(frozen=True)
class Placement:
    """Where this process trains: rank `rank` of `world`, on `device`."""

    rank: int
    world: int
    device: str

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def train(config: TrainConfig) -> TrainResult:
    """Train to `config.max_steps`, resuming from `out_dir/ckpt.pt` when it exists; the schedule always
    follows max_steps, so a finished run given a larger max_steps goes on from where it stopped."""
    if config.shards is None:
        raise InputError("TrainConfig.shards is not set")
    where, owned_group = _distributed(config)
    try:
        return _train(config, where)
    finally:
        if owned_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, where: Placement) -> TrainResult:
    """The run top to bottom, as nanoGPT's train.py reads: set up, then step, validate and checkpoint."""
    torch.manual_seed(config.seed)
    out_dir = storage.normalize(config.out_dir)
    checkpoint = storage.join(out_dir, CHECKPOINT)
    source = open_source(config.shards)
    model, optimizer = _model_and_optimizer(config, where)
    step, loader_state = _resume(config, out_dir, model, optimizer, where)
    stream, batches = _batches(config, source, where, loader_state)
    wrapped = _parallel(model, config, where)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if where.cuda else nullcontext()
    checkpoint_every = config.checkpoint_every or max(1, config.max_steps // 10)
    val_every = config.val_every or checkpoint_every
    val_enabled = config.val_fraction > 0
    trace = [] if config.trace_data else None
    if where.master:
        print(
            f"model: {config.preset}, {model.num_parameters() / 1e6:.2f}M parameters; device {where.device}, "
            f"{where.world} rank(s); {_tokens_per_step(config, where):,} tokens/step; "
            f"checkpoint every {checkpoint_every} steps",
            flush=True,
        )
    log = Log(config, where, out_dir, model, step)
    while step < config.max_steps:
        lr = learning_rate(step, config)
        loss = _step(wrapped, optimizer, lr, batches, stream, config, where, autocast, trace)
        step += 1
        log.step(step, loss, lr)
        if val_enabled and (step % val_every == 0 or step == config.max_steps):
            val_loss = _validate(model, source, config, where, autocast)
            if val_loss is None:
                val_enabled = False
                log.say(f"no held-out documents (val_fraction {config.val_fraction}): validation is off")
            else:
                log.validation(step, val_loss)
        if step % checkpoint_every == 0 or step == config.max_steps:
            _save(checkpoint, model, optimizer, step, stream, config, where)
    result = log.close(step)
    result.checkpoint = checkpoint
    if trace is not None:
        _write_trace(out_dir, where, trace, model)
    if where.master and config.sample_tokens:
        result.sample = sample(model, config.sample_prompt, config.sample_tokens, config.seed)
        print(f"sample: {result.sample!r}", flush=True)
    return result


def _distributed(config: TrainConfig) -> tuple[Placement, bool]:
    """This process's placement, and whether it owns the process group: joins torchrun's or Ray Train's group."""
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
    return Placement(rank, world, device), owned


def adamw(model: GPT, config: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW as GPT-2 trained it: weight decay on matrices only, betas (0.9, 0.95)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
        fused=fused,
    )


def _model_and_optimizer(config: TrainConfig, where: Placement) -> tuple[GPT, torch.optim.AdamW]:
    """The preset's GPT on its device, and its AdamW (fused on CUDA)."""
    model = build_model(config.preset, config.block_size).to(where.device)
    return model, adamw(model, config, fused=where.cuda)


def _resume(
    config: TrainConfig, out_dir: str, model: GPT, optimizer: torch.optim.AdamW, where: Placement
) -> tuple[int, dict | None]:
    """(step, this rank's loader state) from out_dir's checkpoint; (0, None) when there is none."""
    if where.master and storage.exists(out_dir):
        storage.delete_temporaries(out_dir)  # partial files of a writer killed mid-write
    checkpoint = storage.join(out_dir, CHECKPOINT)
    if not storage.exists(checkpoint):
        return 0, None
    shape = f"preset {config.preset!r} with block_size {config.block_size}"
    step, loader_state = restore_checkpoint(checkpoint, model, optimizer, where.rank, where.world, shape)
    if where.master:
        print(
            f"resumed from {checkpoint} at step {step}" if step else f"starting from the weights in {checkpoint}",
            flush=True,
        )
    return step, loader_state


def _batches(
    config: TrainConfig, source: Source, where: Placement, loader_state: dict | None
) -> tuple[TrainStream, Iterator]:
    """This rank's training stream (its state goes into checkpoints) and the DataLoader's batches from it."""
    stream = TrainStream(
        source,
        config.batch_size,
        config.block_size,
        config.seed,
        where.rank,
        where.world,
        config.num_workers,
        config.val_fraction,
        loader_state,
    )
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.num_workers, pin_memory=where.cuda)
    return stream, iter(loader)


def _parallel(model: GPT, config: TrainConfig, where: Placement) -> torch.nn.Module:
    """The module the steps run: the model, compiled when asked, in DDP on several ranks."""
    if config.compile:
        model = torch.compile(model)
    if where.world > 1:
        model = DistributedDataParallel(model, device_ids=[torch.device(where.device).index] if where.cuda else None)
    return model


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.AdamW,
    lr: float,
    batches: Iterator,
    stream: TrainStream,
    config: TrainConfig,
    where: Placement,
    autocast,
    trace: list | None,
) -> torch.Tensor:
    """One optimizer step over grad_accum_steps micro-batches (DDP syncs gradients on the last only).
    The loss stays on the device: reading it would make a GPU wait."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=where.device)
    for micro in range(config.grad_accum_steps):
        x, y, logical, state, opened = next(batches)
        stream.record(logical, state)
        if trace is not None:
            trace += [[where.rank * stream.workers + logical, *unit] for unit in opened]
        x, y = x.to(where.device, non_blocking=True), y.to(where.device, non_blocking=True)
        sync = micro == config.grad_accum_steps - 1
        with model.no_sync() if where.world > 1 and not sync else nullcontext(), autocast:
            _, loss = model(x, y)
            loss = loss / config.grad_accum_steps
        loss.backward()
        loss_sum += loss.detach()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def _validate(model: GPT, source: Source, config: TrainConfig, where: Placement, autocast) -> float | None:
    """Mean loss on the first `val_batches` batches of the held-out split (the same batches every time)."""
    loader = PackedLoader(
        source, config.batch_size, config.block_size, config.seed, where.rank, where.world, "val", config.val_fraction
    )
    total = torch.zeros(2, device=where.device)
    model.eval()
    with torch.no_grad():
        try:
            for _ in range(config.val_batches):
                x, y = (t.to(where.device) for t in loader.next_batch())
                with autocast:
                    _, loss = model(x, y)
                total += torch.stack([loss.float(), torch.ones((), device=where.device)])
        except EmptySplitError:
            pass  # this rank's units hold no held-out document; the others' count
    model.train()
    if where.world > 1:
        dist.all_reduce(total)
    return (total[0] / total[1]).item() if total[1] else None


def _save(
    location: str,
    model: GPT,
    optimizer: torch.optim.AdamW,
    step: int,
    stream: TrainStream,
    config: TrainConfig,
    where: Placement,
) -> None:
    """Rank 0 writes the checkpoint with every rank's loader state (gathered, so every rank calls this)."""
    states = [None] * where.world
    if where.world > 1:
        dist.all_gather_object(states, stream.state_dict())
    else:
        states = [stream.state_dict()]
    if where.master:
        save_checkpoint(location, training_checkpoint(model, optimizer, step, states, config))


def _write_trace(out_dir: str, where: Placement, trace: list, model: GPT) -> None:
    """data-rank<R>.json (`trace_data`): the units this rank read and a hash of its final weights."""
    digest = hashlib.sha256(b"".join(p.detach().cpu().float().numpy().tobytes() for p in model.parameters()))
    storage.write_json(
        storage.join(out_dir, f"data-rank{where.rank}.json"), {"units": trace, "weights_sha256": digest.hexdigest()}
    )


def sample(model: GPT, prompt: str, tokens: int, seed: int) -> str:
    """The prompt and `tokens` sampled tokens (top-k 50), decoded; the same seed gives the same text."""
    encoding, device = gpt2_encoding(), model.transformer.wte.weight.device
    model.eval()
    ids = torch.tensor([encoding.encode_ordinary(prompt)], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    return encoding.decode(model.generate(ids, tokens, generator=generator)[0].tolist())


def _tokens_per_step(config: TrainConfig, where: Placement) -> int:
    return config.batch_size * config.block_size * config.grad_accum_steps * where.world


def _peak_flops(config: TrainConfig, device: str) -> float | None:
    if config.peak_tflops:
        return config.peak_tflops * 1e12
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        return next((tf * 1e12 for gpu, tf in PEAK_TFLOPS.items() if gpu in name), None)
    return None


class Log:
    """A run's reports. Every `log_every` steps: loss, lr, tokens/s and MFU of the window since the last
    report, into metrics.jsonl, the TrainResult and (rank 0) a printed line; validation losses likewise;
    on a terminal, a tqdm bar."""

    def __init__(self, config: TrainConfig, where: Placement, out_dir: str, model: GPT, step: int):
        self.config, self.where, self.out_dir = config, where, out_dir
        self.metrics = Metrics(out_dir, step, enabled=where.master)
        self.result = TrainResult()
        self.tokens_per_step = _tokens_per_step(config, where)
        self.flops_per_token, self.peak = model.flops_per_token(), _peak_flops(config, where.device)
        self.progress = _progress(step, config.max_steps) if where.master else None
        self.first_step = step
        self.started = self.window_start = time.perf_counter()
        self.window_steps = 0

    def step(self, step: int, loss: torch.Tensor, lr: float) -> None:
        self.window_steps += 1
        if step % self.config.log_every == 0 or step == self.config.max_steps:
            elapsed = time.perf_counter() - self.window_start
            tokens_per_s = self.window_steps * self.tokens_per_step / elapsed
            record = {"step": step, "loss": round(loss.item(), 4), "lr": lr, "tokens_per_s": round(tokens_per_s)}
            if self.peak:
                record["mfu"] = round(self.flops_per_token * tokens_per_s / self.where.world / self.peak, 4)
            eta = (self.config.max_steps - step) * elapsed / self.window_steps
            self.metrics.write(record)
            self.result.losses.append((step, record["loss"]))
            self.result.tokens_per_s = tokens_per_s
            mfu = f"  mfu {record['mfu']:.1%}" if self.peak else ""
            self.say(
                f"step {step:>6}  loss {record['loss']:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s{mfu}  "
                f"eta {_duration(eta)}"
            )
            self.window_start, self.window_steps = time.perf_counter(), 0
        if self.progress is not None:  # the last logged loss and tokens/s (reading every step's loss would sync a GPU)
            if self.result.losses:
                self.progress.set_postfix_str(
                    f"loss {self.result.losses[-1][1]:.3f}, {self.result.tokens_per_s:,.0f} tok/s", refresh=False
                )
            self.progress.update(1)

    def validation(self, step: int, val_loss: float) -> None:
        self.metrics.write({"step": step, "val_loss": round(val_loss, 4)})
        self.result.val_losses.append((step, round(val_loss, 4)))
        self.say(f"step {step:>6}  val loss {val_loss:.4f}")

    def say(self, line: str) -> None:
        """A line on rank 0's stdout (above the bar when there is one)."""
        if not self.where.master:
            return
        if self.progress is not None:
            self.progress.write(line)
        else:
            print(line, flush=True)

    def close(self, step: int) -> TrainResult:
        """The result, with tokens/s and MFU over the whole run; metrics.jsonl closed and plotted into loss.png."""
        if self.progress is not None:
            self.progress.close()
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.result.tokens_per_s = (step - self.first_step) * self.tokens_per_step / elapsed
        world, peak = self.where.world, self.peak
        self.result.mfu = self.flops_per_token * self.result.tokens_per_s / world / peak if peak else None
        self.metrics.close()
        if self.where.master:
            plot_losses(self.metrics.records, storage.join(self.out_dir, "loss.png"))
        return self.result


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


def _progress(step: int, total: int):
    """A tqdm bar on a terminal (loss, tokens/s, ETA); nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


if __name__ == "__main__":  # python -m training.train CONFIG.yaml (what `webtext train` runs)
    from webtext.core.config import load_config

    train(load_config(sys.argv[1], TrainConfig))
