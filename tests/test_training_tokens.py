"""Token shards: the same batches as the Parquet loader, exact resume, manifests checked, Ray tasks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tests.test_training import write_shards
from training.data import PackedLoader, open_source
from training.tokenizer import EOT, gpt2_encoding
from training.tokens import tokenize_shards
from webtext.core.schemas import SCHEMA_VERSION


def batches(loader, n):
    return [loader.next_batch() for _ in range(n)]


@pytest.mark.parametrize("split", ["train", "val"])
def test_token_shards_give_the_parquet_loaders_batches(tmp_path, split):
    folder = write_shards(tmp_path / "shards")
    index = tokenize_shards(folder, tmp_path / "tokens", workers=1)
    enc = gpt2_encoding()
    texts = pq.read_table(folder).column("text").to_pylist()
    assert index["documents"] == len(texts) == 60
    assert index["tokens"] == sum(len(enc.encode_ordinary(t)) + 1 for t in texts)
    raw = np.fromfile(tmp_path / "tokens" / "tokens-00000.bin", dtype=np.uint16)
    assert raw[-1] == EOT and enc.decode(raw[: list(raw).index(EOT)].tolist()) == texts[0]

    def make(location):
        return PackedLoader(location, 3, 24, seed=5, rank=1, world_size=2, split=split, val_fraction=0.3)

    from_parquet, from_tokens = batches(make(folder), 25), batches(make(tmp_path / "tokens"), 25)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(from_parquet, from_tokens))
    loader = make(tmp_path / "tokens")
    batches(loader, 11)
    resumed = make(tmp_path / "tokens")
    resumed.load_state_dict(loader.state_dict())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches(resumed, 14), from_tokens[11:]))


def test_splits_are_disjoint_and_follow_the_fraction(tmp_path):
    folder = write_shards(tmp_path / "shards", docs_per_shard=200, shards=1)
    tokenize_shards(folder, tmp_path / "tokens", workers=1)
    seen = {}
    for split in ("train", "val"):
        loader = PackedLoader(tmp_path / "tokens", 1, 8, split=split, val_fraction=0.25)
        docs = [loader._unit_tokens() for loader.unit in range(len(loader._epoch_units()))]
        seen[split] = {tuple(d) for unit in docs for d in np.split(unit, np.flatnonzero(unit == EOT) + 1) if len(d)}
    assert not seen["train"] & seen["val"]
    assert 0.15 < len(seen["val"]) / 200 < 0.35 and len(seen["train"]) + len(seen["val"]) == 200


def make_manifest_folder(tmp_path):
    folder = tmp_path / "built"
    write_shards(folder / "data")
    shards = sorted((folder / "data").glob("*.parquet"))
    entries = [
        {
            "file": f"data/{p.name}",
            "rows": 30,
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in shards
    ]
    (folder / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "shards": entries}))
    return folder


def test_manifest_folder_is_read_and_checked(tmp_path):
    folder = make_manifest_folder(tmp_path)
    source = open_source(folder)
    assert source.kind == "parquet" and len(source.files) == 2
    (folder / "data" / "shard-00001.parquet").rename(folder / "data" / "other.parquet")
    with pytest.raises(ValueError, match="shard-00001.parquet"):
        open_source(folder)


def test_tokenize_with_ray_tasks(tmp_path, local_ray):
    folder = write_shards(tmp_path / "shards", docs_per_shard=10)
    index = tokenize_shards(folder, tmp_path / "tokens", use_ray=True)
    assert [e["source"] for e in index["files"]] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert index["documents"] == 20 and len(open_source(tmp_path / "tokens").units) == 4
