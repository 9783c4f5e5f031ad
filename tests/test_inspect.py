"""`webtext inspect`: figures computed from the files, one document by id or url, PNG charts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.corpora import write_docs
from webtext.cli import main
from webtext.core.config import ShardConfig
from webtext.core.runner import run_stage
from webtext.shards import SHARDS


@pytest.fixture(scope="module")
def built(tmp_path_factory, local_ray) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inspect")
    docs = write_docs(root / "docs", files=2, rows=150)
    run_stage(SHARDS, [str(docs)], str(root / "shards"), ShardConfig(max_rows_per_shard=60, row_group_rows=16))
    return docs, root / "shards"


def test_summary_figures_match_the_documents(built, capsys):
    docs, shards = built
    source = pq.read_table(docs)
    assert main(["inspect", str(shards), "--top", "3"]) == 0
    out = capsys.readouterr().out
    tokens, words = sum(source.column("n_tokens").to_pylist()), sum(source.column("n_words").to_pylist())
    assert f"300 documents, {tokens:,} GPT-2 tokens, {words:,} words" in out
    for heading in ("schema:", "funnel:", "words per document", "top domains:", "top subreddits:"):
        assert heading in out
    domains = sorted(Counter(source.column("domain").to_pylist()).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    for name, n in domains:
        assert f"{n:>9,}  {name}" in out
    assert "Reddit submissions: 2005-06 to 2007-" in out


def test_tokens_are_na_without_an_n_tokens_column(tmp_path, local_ray, capsys):
    docs = write_docs(tmp_path / "docs", files=1, rows=20)
    table = pq.read_table(docs).drop_columns(["n_tokens", "n_words"])
    pq.write_table(table, docs / "part-00000.parquet")
    run_stage(SHARDS, [str(docs)], str(tmp_path / "shards"), ShardConfig())
    assert main(["inspect", str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    words = sum(len(t.split()) for t in table.column("text").to_pylist())  # counted from the text
    assert f"20 documents, n/a GPT-2 tokens, {words:,} words" in out


def test_one_document_by_id_and_by_url_with_provenance(built, capsys):
    docs, shards = built
    row = pq.read_table(docs).slice(123, 1).to_pylist()[0]
    assert main(["inspect", str(shards), "--id", row["id"]]) == 0
    out = capsys.readouterr().out
    assert f"url: {row['url']}" in out and f"subreddits: {row['subreddits']}" in out and row["text"] in out
    assert main(["inspect", str(shards), "--url", row["url"]]) == 0
    assert f"id: {row['id']}" in capsys.readouterr().out
    assert main(["inspect", str(shards), "--id", "0" * 32]) == 2
    assert "no document with id" in capsys.readouterr().err


def test_plots_are_png_files(built, tmp_path, capsys):
    _, shards = built
    assert main(["inspect", str(shards), "--plot", str(tmp_path / "plots"), "--samples", "0"]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["domains.png", "funnel.png", "lengths.png", "months.png", "subreddits.png"]
    for name in names:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
