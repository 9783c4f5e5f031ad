"""Checkpoints (`ckpt.pt`): what they hold, how they are written and read, and models made from them.

A checkpoint is a `torch.save`d dict. Every one holds `model` (the state dict) and `model_config` (the
GPTConfig fields), enough to rebuild the model on its own. A training checkpoint adds what resuming
exactly needs: `optimizer`, `step`, `rng` (torch's CPU generator), `loader` (every rank's loader state)
and `config` (the TrainConfig, for the record). An imported model (`webtext import-hf`) is weights only,
so training from it starts at step 0.
"""

from __future__ import annotations

import dataclasses
import io
import json

import torch

from training.model import GPT, GPTConfig
from webtext.core import storage
from webtext.core.config import TrainConfig
from webtext.core.stage import InputError

CHECKPOINT = "ckpt.pt"


class CheckpointError(InputError):
    """A checkpoint that cannot be read: truncated, or not written by webtext."""


def weights_checkpoint(model: GPT) -> dict:
    return {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config)}


def training_checkpoint(
    model: GPT, optimizer: torch.optim.Optimizer, step: int, loaders: list[dict], config: TrainConfig
) -> dict:
    """Everything a run resumes from; `loaders` holds one loader state per rank, in rank order."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "loader": loaders,
        "rng": torch.get_rng_state(),
        "model_config": dataclasses.asdict(model.config),
        "config": json.loads(config.model_dump_json()),
    }


def save_checkpoint(location, payload: dict) -> None:
    """Atomic: the storage layer writes a temporary file and renames it (an object store publishes on completion)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(location, buffer.getvalue())


def load_checkpoint(location) -> dict:
    try:
        return torch.load(io.BytesIO(storage.read_bytes(location)), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{storage.normalize(location)}: cannot load checkpoint (truncated or not a webtext "
            f"checkpoint): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def model_from_checkpoint(location) -> GPT:
    """The model a checkpoint holds, shaped by its own `model_config`."""
    state = load_checkpoint(location)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model


def restore_checkpoint(
    location, model: GPT, optimizer: torch.optim.Optimizer, rank: int, world: int, shape: str
) -> tuple[int, dict | None]:
    """Load a checkpoint into `model`, and from a training checkpoint also into `optimizer` and torch's
    RNG: (the step to go on from, this rank's loader state), or (0, None) for weights only. `shape` names
    the model the run asked for, in the error when the weights do not fit it."""
    state = load_checkpoint(location)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{location}: weights do not fit {shape}: {str(exc).splitlines()[0][:200]}") from exc
    if "optimizer" not in state:
        return 0, None
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if len(state["loader"]) != world:
        raise InputError(
            f"{location}: written by {len(state['loader'])} ranks, this run has {world}; resume with as many"
        )
    return state["step"], state["loader"][rank]
