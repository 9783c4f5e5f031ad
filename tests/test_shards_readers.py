"""The shards open with the readers ML engineers use: pyarrow, pandas, DuckDB, polars, HF datasets."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.corpora import write_docs
from webtext.core.config import ShardConfig
from webtext.core.runner import run_stage
from webtext.shards import SHARDS


@pytest.fixture(scope="module")
def shards(tmp_path_factory, local_ray) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("readers")
    docs = write_docs(root / "docs", files=2, rows=100)
    run_stage(SHARDS, [str(docs)], str(root / "shards"), ShardConfig(max_rows_per_shard=70, row_group_rows=20))
    return root / "shards", set(pq.read_table(docs).column("id").to_pylist())


def test_pyarrow_pandas_duckdb_polars(shards):
    folder, ids = shards
    assert set(pq.read_table(folder / "data").column("id").to_pylist()) == ids
    frame = pd.read_parquet(folder / "data")
    assert set(frame["id"]) == ids and frame["subreddits"].map(len).min() == 1
    count, distinct = duckdb.sql(f"select count(*), count(distinct id) from '{folder}/data/*.parquet'").fetchall()[0]
    assert count == distinct == len(ids)
    assert set(pl.read_parquet(f"{folder}/data/*.parquet")["id"].to_list()) == ids


def test_hugging_face_datasets_offline(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    folder, ids = shards
    by_files = datasets.load_dataset("parquet", data_files=f"{folder}/data/*.parquet", cache_dir=str(tmp_path / "a"))
    assert set(by_files["train"]["id"]) == ids
    by_card = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "b"))  # README.md's `configs`
    assert list(by_card) == ["train"] and by_card["train"].num_rows == len(ids)
    assert set(by_card["train"].features) >= {"id", "url", "text", "subreddits", "n_tokens"}
