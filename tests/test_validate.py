"""`webtext validate`: a sound folder passes; each kind of damage is one line naming the file, exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.corpora import write_docs
from webtext.cli import main
from webtext.core.config import ShardConfig
from webtext.core.manifest import ManifestError, check_manifest
from webtext.core.runner import run_stage
from webtext.core.schemas import SCHEMA_VERSION
from webtext.shards import SHARDS, sha256_file
from webtext.shards.validate import validate


@pytest.fixture(scope="module")
def built(tmp_path_factory, local_ray) -> Path:
    root = tmp_path_factory.mktemp("validate")
    docs = write_docs(root / "docs", files=2, rows=150)
    run_stage(SHARDS, [str(docs)], str(root / "shards"), ShardConfig(max_rows_per_shard=40, row_group_rows=16))
    return root / "shards"


@pytest.fixture
def shards(built, tmp_path) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(built, copy)
    return copy


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def rewrite(folder: Path, index: int, table: pa.Table, update_manifest: bool = True) -> Path:
    """Replace shard `index` by `table` (with the shard schema); optionally make the manifest agree."""
    manifest = manifest_of(folder)
    entry = manifest["shards"][index]
    path = folder / entry["file"]
    pq.write_table(table, path, row_group_size=16)
    if update_manifest:
        entry.update(rows=table.num_rows, bytes=path.stat().st_size, sha256=sha256_file(path))
        manifest["documents"] = sum(e["rows"] for e in manifest["shards"])
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_a_sound_folder_passes(built, capsys):
    assert validate(str(built)) == []
    assert main(["validate", str(built)]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_changed_byte_is_a_checksum_problem_naming_the_file(shards, capsys):
    path = shards / manifest_of(shards)["shards"][2]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = validate(str(shards))
    assert any(p.startswith(f"{path}: sha256") for p in problems), problems
    assert main(["validate", str(shards)]) == 1
    captured = capsys.readouterr()
    assert f"{path}: sha256" in captured.out and "problem(s)" in captured.err


def test_missing_extra_and_truncated_files(shards):
    entries = manifest_of(shards)["shards"]
    (shards / entries[0]["file"]).unlink()
    shutil.copy(shards / entries[1]["file"], shards / "data" / "stray.parquet")
    table = pq.read_table(shards / entries[3]["file"])
    truncated = rewrite(shards, 3, table.slice(1), update_manifest=False)
    problems = "\n".join(validate(str(shards)))
    assert f"{shards / entries[0]['file']}: listed in the manifest but missing" in problems
    assert f"{shards / 'data' / 'stray.parquet'}: not listed in the manifest" in problems
    assert f"{truncated}: {table.num_rows - 1} rows, the manifest says {table.num_rows}" in problems
    assert f"{truncated}: sha256" in problems and f"{truncated}: " in problems


def test_schema_and_schema_version(shards):
    table = pq.read_table(shards / manifest_of(shards)["shards"][0]["file"])
    path = rewrite(shards, 0, table.drop_columns(["title"]).replace_schema_metadata(None))
    manifest = manifest_of(shards)
    manifest["schema_version"] = "0"
    (shards / "manifest.json").write_text(json.dumps(manifest))
    problems = validate(str(shards))
    assert f"{path}: missing column 'title'" in problems
    assert f"{path}: Parquet schema version None, expected {SCHEMA_VERSION!r}" in problems
    assert any("manifest.json: schema version '0'" in p for p in problems)


def test_duplicate_ids_within_and_across_files(shards):
    entries = manifest_of(shards)["shards"]
    a = pq.read_table(shards / entries[0]["file"])
    b = pq.read_table(shards / entries[1]["file"])
    path_a = rewrite(shards, 0, pa.concat_tables([a, a.slice(3, 1)]).sort_by("id"))  # an id twice in one file
    path_b = rewrite(shards, 1, pa.concat_tables([b, a.slice(0, 1)]).sort_by("id"))  # an id of file 0 in file 1
    problems = "\n".join(validate(str(shards)))
    assert f"{path_a}: row 4: duplicate id {a.column('id')[3].as_py()!r}" in problems
    assert f"{path_b}: row" in problems and f"id {a.column('id')[0].as_py()!r} is not in this file's bucket" in problems


def test_null_in_a_required_column(shards):
    table = pq.read_table(shards / manifest_of(shards)["shards"][0]["file"])
    urls = table.column("url").to_pylist()
    urls[2] = None
    schema = pa.schema([f.with_nullable(True) for f in table.schema], metadata=table.schema.metadata)
    path = rewrite(
        shards,
        0,
        pa.Table.from_arrays(
            [pa.array(urls) if n == "url" else table.column(n) for n in table.column_names], schema=schema
        ),
    )
    problems = validate(str(shards))
    assert f"{path}: row group 0: 1 null value(s) in required column 'url'" in problems


def test_no_manifest(shards, capsys):
    (shards / "manifest.json").unlink()
    assert main(["validate", str(shards)]) == 1
    assert "manifest.json: cannot read manifest" in capsys.readouterr().out


def test_the_loaders_cheap_check_catches_size_and_version_without_reading_files(shards):
    check_manifest(str(shards))
    entry = manifest_of(shards)["shards"][1]
    with open(shards / entry["file"], "ab") as f:
        f.write(b"x")
    with pytest.raises(
        ManifestError, match=rf"{entry['file']}: {entry['bytes'] + 1} bytes, the manifest says {entry['bytes']}"
    ):
        check_manifest(str(shards))
    manifest = manifest_of(shards)
    manifest["schema_version"] = "99"
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="schema version '99'"):
        check_manifest(str(shards))
