"""Multi-node training with Ray Train: TorchTrainer starts one worker per GPU (or CPU slot), sets up the
torch process group, and every worker runs the same `train()` as under torchrun.

Checkpoints are the run's own `ckpt.pt` (rank 0 writes it through the storage layer), so a Ray run
resumes from a torchrun run and back. On several nodes `out_dir` (and `shards`) must be storage that
every node reaches: an s3:// URI or a shared file system.
"""

from __future__ import annotations

import os

from training.train import train
from webtext.core import storage
from webtext.core.config import TrainConfig


def _worker(loop_config: dict) -> None:
    train(TrainConfig.model_validate(loop_config["config"]))


def train_on_ray(config: TrainConfig, num_workers: int, use_gpu: bool = False) -> None:
    """Run `train(config)` on `num_workers` Ray Train workers; joins RAY_ADDRESS when set, else a local Ray."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local")
    config = config.model_copy(
        update={"shards": storage.normalize(config.shards), "out_dir": storage.normalize(config.out_dir)}
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"config": config.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name="webtext-train", storage_path=storage.join(config.out_dir, "ray")),
    )
    trainer.fit()
