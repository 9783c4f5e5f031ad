"""Bad files and values through the real `webtext` command: each is one line on stderr naming the
file or key, exit status 2, and no traceback; a bad record inside a good file is a counted skip."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from webtext.cli import main
from webtext.core.manifest import read_manifest
from webtext.demo.dump import write_dump


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; it must exit 2 with one `webtext ...: error:` line containing every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("webtext ")]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and ": error: " in lines[0], err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- config values, validated at load ---------------------------------------------------------------

BAD_VALUES = [
    ({"crawl": {"allowed_networks": ["not-a-cidr"]}}, "crawl.allowed_networks"),
    ({"crawl": {"allowed_networks": ["10.0.0.0/33"]}}, "crawl.allowed_networks"),
    ({"crawl": {"max_bytes": -1}}, "crawl.max_bytes"),
    ({"crawl": {"timeout_s": 0}}, "crawl.timeout_s"),
    ({"crawl": {"concurrent_requests": 0}}, "crawl.concurrent_requests"),
    ({"crawl": {"retries": -1}}, "crawl.retries"),
    ({"shards": {"max_rows_per_shard": 0}}, "shards.max_rows_per_shard"),
    ({"shards": {"row_group_rows": 0}}, "shards.row_group_rows"),
    ({"dedup": {"threshold": 1.5}}, "dedup.threshold"),
    ({"dedup": {"threshold": 0}}, "dedup.threshold"),
    ({"dedup": {"num_perm": 0}}, "dedup.num_perm"),
    ({"dedup": {"shingle_words": 0}}, "dedup.shingle_words"),
    ({"decontaminate": {"ngram": 0}}, "decontaminate.ngram"),
    ({"decontaminate": {"false_positive_rate": 1.0}}, "decontaminate.false_positive_rate"),
    ({"harvest": {"buckets": 0}}, "harvest.buckets"),
    ({"harvest": {"split_bytes": 0}}, "harvest.split_bytes"),
    ({"extract": {"max_html_bytes": 0}}, "extract.max_html_bytes"),
    ({"ray": {"num_cpus": 0}}, "ray.num_cpus"),
    ({"crawl": {"timout_s": 3}}, "crawl.timout_s"),  # a typo is an unknown key, not a silent default
    ({"dumps": "RS.zst"}, "dumps"),
]


@pytest.mark.parametrize("section,key", BAD_VALUES, ids=[key for _, key in BAD_VALUES])
def test_out_of_range_config_value_names_file_and_key(tmp_path, capsys, section, key):
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({"dumps": ["RS.zst"], **section}))
    one_line_error(capsys, ["build", str(config)], str(config), key)


@pytest.mark.parametrize(
    "text", ["dumps: [a\n", "- just\n- a list\n", "\x00\x01binary"], ids=["yaml", "list", "binary"]
)
def test_unparseable_config_names_the_file(tmp_path, capsys, text):
    config = tmp_path / "build.yaml"
    config.write_text(text)
    one_line_error(capsys, ["build", str(config)], str(config))


def test_missing_config_names_the_file(tmp_path, capsys):
    one_line_error(capsys, ["build", str(tmp_path / "nowhere.yaml")], "nowhere.yaml")


def test_bad_cidr_flag_names_the_value(tmp_path, capsys, local_ray):
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/a\n")
    line = one_line_error(
        capsys,
        ["crawl", str(tmp_path / "urls.txt"), "--out", str(tmp_path / "pages"), "--allow-network", "not-a-cidr"],
        "not-a-cidr",
    )
    assert "allowed_networks" in line


# -- dumps ------------------------------------------------------------------------------------------


def good_dump(tmp_path: Path) -> bytes:
    write_dump(tmp_path / "good.zst", [(f"https://site{i}.example/a/{i}", "article") for i in range(300)], seed=1)
    return (tmp_path / "good.zst").read_bytes()


def bad_dumps(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (dump file, text the error must contain)."""
    data = good_dump(tmp_path)
    cases = {
        "truncated_zst": ("RS_cut.zst", data[: len(data) // 2], "ends early"),
        "corrupt_zst": ("RS_corrupt.zst", data[:20] + bytes(range(256)) * 8 + data[2068:], "corrupt"),
        "not_zst": ("RS_text.zst", b'{"id": "a"}\n' * 10, "corrupt"),
        "empty_zst": ("RS_empty.zst", b"", "empty"),
        "empty_jsonl": ("RS_empty.jsonl", b"", "empty"),
        "truncated_gz": (
            "RS_cut.gz",
            gzip.compress(b'{"id": "a", "url": "https://a.example/"}\n' * 5000)[:300],
            "ends early",
        ),
        "cut_last_line": (
            "RS_cut.jsonl",
            b'{"id": "a", "url": "https://a.example/", "score": 5}\n{"id": "b", "ur',
            "ends early",
        ),
    }
    out = {}
    for name, (filename, payload, needle) in cases.items():
        (tmp_path / filename).write_bytes(payload)
        out[name] = (tmp_path / filename, needle)
    return out


def test_bad_dumps_are_one_line_errors_naming_the_file(tmp_path, capsys, local_ray):
    for name, (path, needle) in bad_dumps(tmp_path).items():
        one_line_error(capsys, ["harvest", str(path), "--out", str(tmp_path / f"urls-{name}")], str(path), needle)
        assert not (tmp_path / f"urls-{name}" / "_COMPLETE.json").exists(), name


def test_unreadable_dump_paths_name_the_path(tmp_path, capsys, local_ray):
    (tmp_path / "a-file").write_text("x")
    for path in (tmp_path / "nowhere.zst", tmp_path / "a-file" / "under-a-file.zst"):
        one_line_error(capsys, ["harvest", str(path), "--out", str(tmp_path / "urls")], str(path))
    (tmp_path / "no-dumps").mkdir()
    (tmp_path / "no-dumps" / "readme.txt").write_text("no dump here")
    one_line_error(capsys, ["harvest", str(tmp_path / "no-dumps"), "--out", str(tmp_path / "urls")], "no-dumps")


def test_bad_records_are_counted_never_silently_dropped(tmp_path, capsys, local_ray):
    records = [
        {"id": "a", "url": "https://good.example/1", "score": 10, "subreddit": "news", "created_utc": 1119800000},
        {"id": "b", "url": 17, "score": 10},  # mistyped url
        {"id": "c", "url": "https://good.example/2", "score": "ten"},  # mistyped score
        ["not", "an", "object"],
        {"id": "d", "url": None, "score": 10},  # null url
        {"id": "e", "url": "https://good.example/3", "score": None},  # null score
        {"id": "f", "url": "https://good.example/4", "score": 5, "created_utc": {"nested": 1}},
    ]
    lines = [json.dumps(r) for r in records] + ["{not json", "\xff\xfe garbage"]
    (tmp_path / "RS_mixed.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["harvest", str(tmp_path / "RS_mixed.jsonl"), "--out", str(tmp_path / "urls")]) == 0
    stats = json.loads((tmp_path / "urls" / "_stats.json").read_text())
    assert stats["input"] == len(lines)
    assert stats["input"] == stats["output"] + sum(stats["dropped"].values())
    assert stats["output"] == pq.read_table(tmp_path / "urls").num_rows >= 1
    assert stats["dropped"].get("malformed", 0) >= 3


# -- Parquet inputs of a stage ----------------------------------------------------------------------


def test_bad_parquet_inputs_name_the_file_and_column(tmp_path, capsys, local_ray):
    cases = {
        "missing.parquet": (pa.table({"url": ["https://a.example/"]}), "'html'"),
        "mistyped.parquet": (pa.table({"url": ["https://a.example/"], "html": pa.array([[1, 2]])}), "'html'"),
    }
    for name, (table, needle) in cases.items():
        pq.write_table(table, tmp_path / name)
        one_line_error(capsys, ["extract", str(tmp_path / name), "--out", str(tmp_path / f"o-{name}")], name, needle)
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    one_line_error(
        capsys, ["extract", str(tmp_path / "corrupt.parquet"), "--out", str(tmp_path / "o-c")], "corrupt.parquet"
    )
    (tmp_path / "zero.parquet").write_bytes(b"")
    one_line_error(capsys, ["dedup", str(tmp_path / "zero.parquet"), "--out", str(tmp_path / "o-z")], "zero.parquet")


def test_nulls_in_required_columns_are_counted_skips(tmp_path, capsys, local_ray):
    html = b"<html><body><p>" + b"Word " * 200 + b"</p></body></html>"
    pq.write_table(
        pa.table(
            {
                "url": pa.array(["https://a.example/1", None, "https://a.example/3", "not a url"], pa.string()),
                "html": pa.array([html, html, None, html], pa.binary()),
            }
        ),
        tmp_path / "pages.parquet",
    )
    assert main(["extract", str(tmp_path / "pages.parquet"), "--out", str(tmp_path / "docs")]) == 0, (
        capsys.readouterr().err
    )
    stats = json.loads((tmp_path / "docs" / "_stats.json").read_text())
    assert stats["input"] == 4 == stats["output"] + sum(stats["dropped"].values())
    docs = pq.read_table(tmp_path / "docs")
    assert None not in docs.column("url").to_pylist() and None not in docs.column("id").to_pylist()


def test_null_ids_and_texts_in_dedup_input_are_a_counted_skip_or_name_the_file(tmp_path, capsys, local_ray):
    pq.write_table(
        pa.table(
            {
                "id": pa.array(["x", None, "z"], pa.string()),
                "text": pa.array(["one two three four five six", "a b c d e f", None]),
            }
        ),
        tmp_path / "docs.parquet",
    )
    code = main(["dedup", str(tmp_path / "docs.parquet"), "--out", str(tmp_path / "deduped")])
    err = capsys.readouterr().err
    if code == 0:  # a counted skip
        stats = json.loads((tmp_path / "deduped" / "_stats.json").read_text())
        assert stats["input"] == 3 == stats["output"] + sum(stats["dropped"].values())
        assert None not in pq.read_table(tmp_path / "deduped").column("id").to_pylist()
    else:  # or a one-line error naming the file
        assert code == 2 and "docs.parquet: column 'id' has 1 null value(s)" in err and "Traceback" not in err, err[
            -2000:
        ]


def test_empty_inputs_give_empty_outputs(tmp_path, capsys, local_ray):
    pq.write_table(
        pa.table({"url": pa.array([], pa.string()), "html": pa.array([], pa.binary())}), tmp_path / "pages.parquet"
    )
    assert main(["extract", str(tmp_path / "pages.parquet"), "--out", str(tmp_path / "docs")]) == 0
    assert main(["dedup", str(tmp_path / "docs"), "--out", str(tmp_path / "deduped")]) == 0
    assert main(["shards", str(tmp_path / "deduped"), "--out", str(tmp_path / "shards")]) == 0
    assert pq.read_table(tmp_path / "deduped").num_rows == 0
    assert read_manifest(str(tmp_path / "shards"))["documents"] == 0


def test_a_build_whose_dump_yields_no_url_writes_an_empty_corpus(tmp_path, capsys, local_ray):
    records = [
        {"id": f"s{i}", "url": f"https://www.reddit.com/r/x/{i}", "is_self": True, "score": 9} for i in range(20)
    ]
    (tmp_path / "RS_self.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "evalset.txt").write_text("an eval passage with more than eight words in it for the filter\n")
    (tmp_path / "build.yaml").write_text(
        yaml.safe_dump(
            {
                "dumps": ["RS_self.jsonl"],
                "out_dir": "out",
                "decontaminate": {"evalsets": ["evalset.txt"]},
            }
        )
    )
    assert main(["build", str(tmp_path / "build.yaml")]) == 0, capsys.readouterr().err[-2000:]
    manifest = read_manifest(str(tmp_path / "out" / "shards"))
    assert manifest["documents"] == 0
    harvest = manifest["funnel"][0]
    assert harvest["stage"] == "harvest" and harvest["input"] == 20 and harvest["output"] == 0
