"""GPT-2 model, tokenizer, streaming loader with exact resume, and the training loop, on real torch."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint
from training.data import PackedLoader
from training.model import GPT, GPTConfig, build_model
from training.tokenizer import EOT, gpt2_encoding
from training.train import sample, train
from webtext.core.config import TrainConfig

WORDS = "the library council voted to open a new branch near the river and residents welcomed the plan".split()


def write_shards(folder, docs_per_shard=30, shards=2, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        texts = [
            f"Document {s}-{i}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))
            for i in range(docs_per_shard)
        ]
        pq.write_table(
            pa.table({"id": [f"{s}-{i}" for i in range(docs_per_shard)], "text": texts}),
            folder / f"shard-{s:05d}.parquet",
            row_group_size=7,
        )
    return folder


@pytest.mark.parametrize(
    "preset, millions", [("gpt2", 124), ("gpt2-medium", 355), ("gpt2-large", 774), ("gpt2-xl", 1558)]
)
def test_parameter_counts_match_gpt2(preset, millions):
    with torch.device("meta"):
        model = build_model(preset)
    assert round(model.num_parameters() / 1e6) == millions


def test_tied_embeddings_and_scaled_residual_init():
    model = GPT(GPTConfig(block_size=32, n_layer=8, n_head=2, n_embd=64))
    assert model.lm_head.weight is model.transformer.wte.weight
    proj = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h])
    fc = torch.cat([b.mlp.c_fc.weight.flatten() for b in model.transformer.h])
    assert abs(proj.std().item() - 0.02 / 4) < 0.001 and abs(fc.std().item() - 0.02) < 0.002


def test_gpt2_tokenizer_exact_ids():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.n_vocab == 50257 and enc.eot_token == EOT
    text = "WebText: 45 million links, ≥ 3 karma!"
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_loader_yields_only_shard_tokens_and_resumes_exactly(tmp_path):
    folder = write_shards(tmp_path / "shards")
    enc = gpt2_encoding()

    def make():
        return PackedLoader(folder, batch_size=4, block_size=32, seed=3)

    reference = make()
    batches = [reference.next_batch() for _ in range(40)]  # several epochs of this small corpus
    vocabulary = {t for text in pq.read_table(folder).column("text").to_pylist() for t in enc.encode_ordinary(text)}
    assert {t for x, _ in batches for t in x.flatten().tolist()} <= vocabulary | {EOT}
    assert all(torch.equal(x[:, 1:], y[:, :-1]) for x, y in batches)
    first = make()
    for _ in range(17):
        first.next_batch()
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    for x, y in batches[17:]:
        rx, ry = resumed.next_batch()
        assert torch.equal(rx, x) and torch.equal(ry, y)


def test_loader_splits_row_groups_across_ranks(tmp_path):
    folder = write_shards(tmp_path / "shards")
    a = PackedLoader(folder, 2, 16, seed=1, rank=0, world_size=2)
    b = PackedLoader(folder, 2, 16, seed=1, rank=1, world_size=2)
    units_a, units_b = set(a._epoch_units()), set(b._epoch_units())
    assert not units_a & units_b and len(units_a | units_b) == len(a.source.units)


def test_loader_names_a_shard_without_text(tmp_path):
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet.*text"):
        PackedLoader(tmp_path, 2, 8)


def config(tmp_path, folder, **overrides):
    settings = dict(
        shards=folder,
        out_dir=tmp_path / "run",
        block_size=32,
        batch_size=8,
        max_steps=60,
        warmup_steps=5,
        log_every=10,
        sample_tokens=5,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.mark.slow
def test_training_lowers_the_loss(tmp_path):
    result = train(config(tmp_path, write_shards(tmp_path / "shards")))
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < first - 2.0, result.losses
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 60 and [s["batches"] for s in state["loader"]] == [60]
    assert set(state) >= {"model", "optimizer", "rng", "model_config", "config"}


def test_sampling_follows_the_seed():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=32))
    text = sample(model, "The river", 12, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    assert sample(model, "The river", 12, seed=7) == text
    assert sample(model, "The river", 12, seed=8) != text


@pytest.mark.slow
def test_a_model_trained_on_a_repeating_text_continues_it(tmp_path):
    """The sample at the end of a run comes from the trained weights: they learned the sequence."""
    cycle = " one two three four five six seven eight nine ten"
    folder = tmp_path / "shards"
    folder.mkdir()
    pq.write_table(pa.table({"id": [str(i) for i in range(40)], "text": [cycle * 20] * 40}), folder / "a.parquet")
    result = train(
        config(tmp_path, folder, max_steps=80, val_fraction=0.0, sample_prompt=" three four", sample_tokens=12)
    )
    order, words = cycle.split(), result.sample.split()[1:]  # from "four" on: 12 sampled tokens, 12 transitions
    follows = sum(a in order and order[(order.index(a) + 1) % len(order)] == b for a, b in zip(words, words[1:]))
    assert follows >= 9, result.sample  # the trained model puts ~0.93 on each next word; an untrained one ~0


@pytest.mark.slow
def test_a_finished_run_extended_goes_on_exactly(tmp_path):
    """Resuming restores weights, optimizer, RNG and data position: a run of 10 steps taken to 20 ends
    where a run of 20 does (the learning rate is constant after warm-up, so both follow one schedule)."""
    folder = write_shards(tmp_path / "shards")
    settings = dict(learning_rate=1e-3, min_learning_rate=1e-3, log_every=1, val_every=5, val_fraction=0.2)
    whole = train(config(tmp_path / "a", folder, max_steps=20, **settings))
    first = train(config(tmp_path / "b", folder, max_steps=10, **settings))
    extended = train(config(tmp_path / "b", folder, max_steps=20, **settings))
    assert first.losses + extended.losses == whole.losses and len(whole.losses) == 20
    assert first.val_losses + extended.val_losses == whole.val_losses
    a = load_checkpoint(whole.checkpoint)
    b = load_checkpoint(extended.checkpoint)
    assert a["step"] == b["step"] == 20 and a["loader"] == b["loader"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    folder = write_shards(tmp_path / "shards")
    result = train(config(tmp_path, folder, max_steps=2))
    data = Path(result.checkpoint).read_bytes()
    Path(result.checkpoint).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ckpt.pt: cannot load checkpoint"):
        train(config(tmp_path, folder, max_steps=4))
