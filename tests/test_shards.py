"""The shards stage: distributed id-bucketed writing, determinism, limits, the manifest and the card."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest
import yaml

from tests.corpora import documents, write_docs
from webtext.cli import main
from webtext.core import runner, storage
from webtext.core.config import ShardConfig
from webtext.core.manifest import check_manifest
from webtext.core.runner import run_stage
from webtext.core.schemas import SCHEMA_VERSION, SHARD
from webtext.shards import SHARDS, read_manifest, sha256_file
from webtext.shards.inspect import inspect_shards
from webtext.shards.validate import validate


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    return write_docs(tmp_path_factory.mktemp("docs"), files=3, rows=200)


def build(docs, out, **config) -> dict:
    run_stage(SHARDS, [str(docs)], str(out), ShardConfig(**config))
    return read_manifest(str(out))


def test_shards_are_bounded_sorted_complete_and_listed_in_the_manifest(docs, tmp_path, local_ray):
    manifest = build(docs, tmp_path / "shards", max_rows_per_shard=50, row_group_rows=16)
    entries = manifest["shards"]
    assert manifest["documents"] == 600 == sum(e["rows"] for e in entries)
    assert len(entries) >= 600 / 50
    assert [e["file"] for e in entries] == [
        f"data/shard-{i:05d}-of-{len(entries):05d}.parquet" for i in range(len(entries))
    ]
    ids = []
    for entry in entries:
        path = tmp_path / "shards" / entry["file"]
        table = pq.read_table(path)
        assert 0 < table.num_rows == entry["rows"] <= 50
        assert table.column("id").to_pylist() == sorted(table.column("id").to_pylist())
        assert pq.ParquetFile(path).metadata.row_group(0).num_rows <= 16
        assert table.schema.metadata[b"webtext_schema_version"] == SCHEMA_VERSION.encode()
        assert table.schema.remove_metadata().equals(SHARD)
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
        ids += table.column("id").to_pylist()
    source = pq.read_table(docs)
    assert sorted(ids) == sorted(source.column("id").to_pylist())  # every document, once
    assert manifest["words"] == sum(source.column("n_words").to_pylist())
    assert manifest["tokens"] == sum(source.column("n_tokens").to_pylist())
    assert manifest["funnel"][-1] == {**manifest["funnel"][-1], "stage": "shards", "input": 600, "output": 600}
    check_manifest(str(tmp_path / "shards"))  # the training loader's cheap checks pass
    written = [p.stat().st_mtime_ns for p in (tmp_path / "shards" / "data").iterdir()]
    assert (tmp_path / "shards" / "manifest.json").stat().st_mtime_ns >= max(written)
    assert not list((tmp_path / "shards").rglob("*.tmp")) and not (tmp_path / "shards" / "_scratch").exists()


def test_same_inputs_give_the_same_files_bit_for_bit(docs, tmp_path, local_ray):
    first = build(docs, tmp_path / "a", max_rows_per_shard=120, row_group_rows=40)
    # the same documents split into other files, in another order
    table = pq.read_table(docs)
    other = tmp_path / "other"
    other.mkdir()
    shuffled = table.take(pa.array(random.Random(1).sample(range(table.num_rows), table.num_rows)))
    pq.write_table(shuffled.slice(0, 250), other / "x.parquet")
    pq.write_table(shuffled.slice(250), other / "y.parquet")
    second = build(other, tmp_path / "b", max_rows_per_shard=120, row_group_rows=40)
    assert [(e["file"], e["rows"], e["sha256"]) for e in first["shards"]] == [
        (e["file"], e["rows"], e["sha256"]) for e in second["shards"]
    ]


def test_duplicate_ids_are_dropped_and_counted(tmp_path, local_ray):
    folder = tmp_path / "docs"
    folder.mkdir()
    table = documents(40)
    pq.write_table(table, folder / "a.parquet")
    pq.write_table(table.slice(0, 5), folder / "b.parquet")  # 5 ids twice
    stats = run_stage(SHARDS, [str(folder)], str(tmp_path / "shards"), ShardConfig(max_rows_per_shard=10))
    assert (stats.input, stats.output, dict(stats.dropped)) == (45, 40, {"duplicate_id": 5})
    ids = pq.read_table(tmp_path / "shards" / "data").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 40


def test_a_document_without_text_fails_naming_file_and_column(tmp_path, local_ray):
    folder = tmp_path / "docs"
    folder.mkdir()
    table = documents(10)
    text = table.column("text").to_pylist()
    text[7] = None
    pq.write_table(table.set_column(table.column_names.index("text"), "text", pa.array(text)), folder / "bad.parquet")
    # found from the footer statistics before anything runs; exit 2 in the CLI
    with pytest.raises(runner.InputError, match=r"bad\.parquet: column 'text' has 1 null value\(s\)"):
        run_stage(SHARDS, [str(folder)], str(tmp_path / "shards"), ShardConfig())
    assert not (tmp_path / "shards" / "manifest.json").exists()


def test_missing_required_column_is_an_input_error(tmp_path, local_ray):
    pq.write_table(documents(3).drop_columns(["text"]), tmp_path / "notext.parquet")
    with pytest.raises(runner.InputError, match=r"notext\.parquet: missing required column 'text'"):
        run_stage(SHARDS, [str(tmp_path / "notext.parquet")], str(tmp_path / "shards"), ShardConfig())


def test_empty_input_gives_one_empty_shard(tmp_path, local_ray):
    pq.write_table(documents(1).slice(0, 0), tmp_path / "empty.parquet")
    manifest = build(tmp_path / "empty.parquet", tmp_path / "shards")
    assert manifest["documents"] == 0 and len(manifest["shards"]) == 1
    assert pq.read_table(tmp_path / "shards" / "data").num_rows == 0


@pytest.mark.parametrize("field", ["max_rows_per_shard", "row_group_rows"])
def test_config_rejects_sizes_below_one(field):
    with pytest.raises(pydantic.ValidationError, match=field):
        ShardConfig(**{field: 0})


def test_dataset_card_describes_the_build(docs, tmp_path, local_ray):
    manifest = build(docs, tmp_path / "shards", max_rows_per_shard=1000)
    card = (tmp_path / "shards" / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
    ]
    assert header["size_categories"] == ["n<1K"]
    for heading in (
        "## Sources",
        "## Funnel",
        "## Schema",
        "## What was removed and why",
        "## Decontamination",
        "## Known limitations",
    ):
        assert heading in card
    assert f"{manifest['documents']:,} documents" in card and "| example.com | 120 |" in card
    assert "| `eval_ngram_matches` |" in card


def test_card_reports_upstream_drops_and_decontamination(tmp_path, local_ray):
    """A decontaminate output folder (marker with funnel, overlap.json) feeding the shards stage."""
    upstream = tmp_path / "decontaminate"
    upstream.mkdir()
    pq.write_table(documents(20), upstream / "part-00000.parquet")
    funnel = [
        {
            "stage": "dedup",
            "unit": "documents",
            "input": 30,
            "output": 25,
            "dropped": {"near_duplicate": 5},
            "outcomes": {},
            "seconds": 1,
        },
        {
            "stage": "decontaminate",
            "unit": "documents",
            "input": 25,
            "output": 20,
            "dropped": {"contaminated": 5},
            "outcomes": {},
            "seconds": 1,
        },
    ]
    storage.write_json(
        str(upstream / "_COMPLETE.json"), {"stage": "decontaminate", "fingerprint": "x", "funnel": funnel}
    )
    storage.write_json(
        str(upstream / "_overlap.json"),
        {
            "corpus": str(upstream),
            "documents": 25,
            "ngram": 8,
            "sets": {
                "wikitext-2": {"ngrams": 1000, "found": 12, "percent": 1.2},
                "lambada": {"ngrams": 500, "found": 1, "percent": 0.2},
            },
        },
    )
    manifest = build(upstream, tmp_path / "shards")
    assert [s["stage"] for s in manifest["funnel"]] == ["dedup", "decontaminate", "shards"]
    card = (tmp_path / "shards" / "README.md").read_text()
    assert "| decontaminate | contaminated | 5 |" in card and "| dedup | near_duplicate | 5 |" in card
    assert "| wikitext-2 | 1,000 | 12 | 1.20% |" in card and "5 of 25" in card
    assert manifest["overlap"]["sets"]["lambada"]["found"] == 1


def test_shards_on_s3(docs, s3_server, local_ray):
    out = f"{s3_server}/run1/shards"
    manifest = build(docs, out, max_rows_per_shard=250)
    assert len(manifest["shards"]) == len(storage.list_files(f"{out}/data"))
    for entry in manifest["shards"]:
        assert sha256_file(f"{out}/{entry['file']}") == entry["sha256"]
    assert storage.exists(f"{out}/README.md")
    assert validate(out) == []
    assert inspect_shards(out, samples=0, echo=lambda *_: None)["documents"] == 600


def test_stage_command_then_validate_and_inspect(docs, tmp_path, local_ray, capsys):
    out = tmp_path / "shards"
    assert main(["shards", str(docs), "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    assert main(["inspect", str(out), "--samples", "0"]) == 0
    assert "600 documents" in capsys.readouterr().out


def test_an_optional_column_of_the_wrong_type_is_an_input_error(tmp_path, local_ray):
    table = documents(3)
    table = table.set_column(table.column_names.index("subreddits"), "subreddits", pa.array(["a", "b", "c"]))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(runner.InputError, match=r"bad\.parquet: column 'subreddits' is string"):
        run_stage(SHARDS, [str(tmp_path / "bad.parquet")], str(tmp_path / "shards"), ShardConfig())
