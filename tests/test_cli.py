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
        assert main(["crawl", str(tmp_path / "urls"), "--out", str(tmp_path / "pages"),
                     "--allow-network", "127.0.0.0/8"]) == 0
    assert main(["extract", str(tmp_path / "pages"), "--out", str(tmp_path / "docs")]) == 0
    assert main(["dedup", str(tmp_path / "docs"), "--out", str(tmp_path / "deduped")]) == 0
    assert main(["decontaminate", str(tmp_path / "deduped"), "--evalset", str(evalset),
                 "--out", str(tmp_path / "clean")]) == 0

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
        pa.table({
            "url": ["https://news.example/a", "https://news.example/b"],
            "html": pa.array([html.encode(), b"<html><body><p>Too short.</p></body></html>"], pa.binary()),
        }),
        tmp_path / "foreign.parquet",
    )
    assert main(["extract", str(tmp_path / "foreign.parquet"), "--out", str(tmp_path / "docs")]) == 0
    docs = pq.read_table(tmp_path / "docs")
    assert docs.column("url").to_pylist() == ["https://news.example/a"]
    assert paragraphs[0][:40] in docs.column("text")[0].as_py()
    assert docs.column("id")[0].as_py()
    stats = json.loads((tmp_path / "docs" / "_stats.json").read_text())
    assert stats["input"] == 2 and stats["output"] == 1 and sum(stats["dropped"].values()) == 1
