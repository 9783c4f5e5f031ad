"""A training process killed with SIGKILL resumes from its last checkpoint onto the uninterrupted loss curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_training import write_shards
from training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(
    block_size=16,
    batch_size=4,
    max_steps=40,
    warmup_steps=4,
    log_every=1,
    checkpoint_every=5,
    val_fraction=0.2,
    val_every=10,
    val_batches=2,
    sample_tokens=0,
)


def webtext(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "webtext.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def write_config(folder: Path, shards: Path) -> Path:
    path = folder / "train.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(SETTINGS, shards=str(shards), out_dir=str(folder / "run"))))
    return path


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_curve(tmp_path):
    shards = write_shards(tmp_path / "shards")
    reference = webtext("train", str(write_config(tmp_path / "a", shards)))
    killed = webtext("train", str(write_config(tmp_path / "b", shards)))
    metrics = tmp_path / "b" / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and killed.poll() is None:  # kill between two checkpoints, well before the end
        if metrics.exists() and sum(1 for line in metrics.read_text().splitlines() if '"loss"' in line) >= 13:
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert killed.wait() == -signal.SIGKILL, "training ended before it could be killed"
    partial = records(tmp_path / "b" / "run")  # flushed line by line: what was logged before the kill is there
    killed_at = max(r["step"] for r in partial)
    saved = load_checkpoint(tmp_path / "b" / "run" / "ckpt.pt")["step"]
    assert 13 <= killed_at < 40 and saved % 5 == 0 and killed_at - 5 <= saved <= killed_at
    resumed = webtext("train", str(write_config(tmp_path / "b", shards)))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed from {tmp_path / 'b' / 'run' / 'ckpt.pt'} at step {saved}" in out
    assert reference.wait(timeout=300) == 0
    expected, got = records(tmp_path / "a" / "run"), records(tmp_path / "b" / "run")
    assert [r["step"] for r in expected if "loss" in r] == list(range(1, 41))

    def drop(rs):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rs]

    assert drop(got) == drop(expected)  # every training and validation loss, step for step
    a = load_checkpoint(tmp_path / "a" / "run" / "ckpt.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "run" / "ckpt.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path):
    shards = write_shards(tmp_path / "shards", shards=1)
    config = write_config(tmp_path, shards)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    process = webtext("train", str(config))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.count("\n") == 1 and "ckpt.pt: cannot load checkpoint" in err, err


def test_token_shards_checkpoints_and_metrics_on_s3(tmp_path, s3_server):
    from training.tokens import tokenize_shards
    from training.train import train
    from webtext.core import storage
    from webtext.core.config import TrainConfig

    base = f"{s3_server}/{tmp_path.name}"
    tokenize_shards(write_shards(tmp_path / "shards", shards=1), f"{base}/tokens", workers=1)
    config = TrainConfig(
        shards=f"{base}/tokens",
        out_dir=f"{base}/run",
        block_size=16,
        batch_size=4,
        max_steps=5,
        learning_rate=1e-3,
        min_learning_rate=1e-3,  # constant after warm-up: a run of 5 steps taken to 8 follows a run of 8
        warmup_steps=2,
        log_every=1,
        checkpoint_every=3,
        val_fraction=0.0,
        sample_tokens=0,
    )
    longer = config.model_copy(update={"max_steps": 8})
    whole = train(longer.model_copy(update={"out_dir": f"{base}/whole"}))
    train(config)
    assert load_checkpoint(f"{base}/run/ckpt.pt")["step"] == 5
    resumed = train(longer)
    assert resumed.losses == whole.losses[5:]

    def read(run):
        return [json.loads(line)["loss"] for line in storage.read_text(f"{base}/{run}/metrics.jsonl").splitlines()]

    assert read("run") == read("whole") == [loss for _, loss in whole.losses]
    a, b = load_checkpoint(f"{base}/whole/ckpt.pt")["model"], load_checkpoint(f"{base}/run/ckpt.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
