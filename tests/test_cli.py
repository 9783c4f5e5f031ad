"""Each stage alone from the `webtext` command: Parquet in, Parquet out, stats beside each output."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from webtext.cli import main
from webtext.demo.dump import write_dump
from webtext.demo.run import demo_evalset, paragraphs
from webtext.demo.site import DemoSite
from webtext.demo.text import ArticleWriter


def test_stages_chain_from_the_command_line(tmp_path, local_ray):
    evalset = demo_evalset(tmp_path)
    with DemoSite(seed=3, n_articles=10, eval_passages=paragraphs(evalset)[:1], slow_seconds=0.1) as site:
        write_dump(tmp_path / "RS_cli.zst", site.links(), seed=3)
        assert main(["harvest", str(tmp_path / "RS_cli.zst"), "--out", str(tmp_path / "urls")]) == 0
        assert (
            main(["crawl", str(tmp_path / "urls"), "--out", str(tmp_path / "pages"), "--allow-network", "127.0.0.0/8"])
            == 0
        )
    assert main(["extract", str(tmp_path / "pages"), "--out", str(tmp_path / "docs")]) == 0
    assert main(["dedup", str(tmp_path / "docs"), "--out", str(tmp_path / "deduped")]) == 0
    assert (
        main(["decontaminate", str(tmp_path / "deduped"), "--evalset", str(evalset), "--out", str(tmp_path / "clean")])
        == 0
    )

    urls = pq.read_table(tmp_path / "urls")
    pages = pq.read_table(tmp_path / "pages")
    assert pages.num_rows == urls.num_rows > 10
    assert sorted(pages.column("url").to_pylist()) == sorted(urls.column("url").to_pylist())
    previous = pages.num_rows
    for folder in ("docs", "deduped", "clean"):
        stats = json.loads((tmp_path / folder / "_stats.json").read_text())
        table = pq.read_table(tmp_path / folder)
        assert stats["input"] == previous and stats["output"] == table.num_rows
        assert stats["input"] == stats["output"] + sum(stats["dropped"].values())
        previous = table.num_rows
    assert json.loads((tmp_path / "clean" / "_stats.json").read_text())["dropped"]["contaminated"] >= 1
    assert json.loads((tmp_path / "deduped" / "_stats.json").read_text())["dropped"]["exact_duplicate"] >= 1


def test_extract_accepts_any_parquet_with_url_and_html(tmp_path, local_ray):
    """Only `url` and `html` are required: pages from another crawler work as they are."""
    title, paragraphs = ArticleWriter(7).article()
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>"
    pq.write_table(
        pa.table(
            {
                "url": ["https://news.example/a", "https://news.example/b"],
                "html": pa.array([html.encode(), b"<html><body><p>Too short.</p></body></html>"], pa.binary()),
            }
        ),
        tmp_path / "foreign.parquet",
    )
    assert main(["extract", str(tmp_path / "foreign.parquet"), "--out", str(tmp_path / "docs")]) == 0
    docs = pq.read_table(tmp_path / "docs")
    assert docs.column("url").to_pylist() == ["https://news.example/a"]
    assert paragraphs[0][:40] in docs.column("text")[0].as_py()
    assert docs.column("id")[0].as_py()
    stats = json.loads((tmp_path / "docs" / "_stats.json").read_text())
    assert stats["input"] == 2 and stats["output"] == 1 and sum(stats["dropped"].values()) == 1


def test_dedup_takes_documents_with_only_id_and_text(tmp_path, local_ray):
    text = " ".join(ArticleWriter(11).article()[1])
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "text": [text, text, "something else entirely, " * 20]}),
        tmp_path / "docs.parquet",
    )
    assert main(["dedup", str(tmp_path / "docs.parquet"), "--out", str(tmp_path / "dedup")]) == 0
    kept = pq.read_table(tmp_path / "dedup")
    assert sorted(kept.column("id").to_pylist()) == ["a", "c"]  # same karma (0) and date: the smaller id survives
    assert json.loads((tmp_path / "dedup" / "_stats.json").read_text())["dropped"] == {"exact_duplicate": 1}


def test_crawl_takes_a_parquet_with_only_url_and_a_text_file(tmp_path, local_ray):
    with DemoSite(seed=4, n_articles=3, slow_seconds=0.1) as site:
        urls = [url for url, *_ in site.links()][:3]
        pq.write_table(pa.table({"url": urls}), tmp_path / "urls.parquet")
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        for name in ("urls.parquet", "urls.txt"):
            out = tmp_path / f"crawl-{name}"
            assert main(["crawl", str(tmp_path / name), "--out", str(out), "--allow-network", "127.0.0.0/8"]) == 0
            pages = pq.read_table(out)
            assert sorted(pages.column("url").to_pylist()) == sorted(urls)
            assert set(pages.column("domain").to_pylist()) == {"127.0.0.1"}  # computed from the URL


def test_bad_input_is_one_line_and_exit_2(tmp_path, local_ray, capsys):
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), tmp_path / "docs.parquet")
    assert main(["dedup", str(tmp_path / "docs.parquet"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("webtext dedup: error: ") and "docs.parquet: missing required column 'text'" in err
    (tmp_path / "pages.parquet").write_bytes(b"PAR1 truncated")
    assert main(["extract", str(tmp_path / "pages.parquet"), "--out", str(tmp_path / "out2")]) == 2
    assert "pages.parquet: cannot read Parquet input" in capsys.readouterr().err
