"""Extraction and cleaning on real trafilatura, with every drop reason exercised."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from cleaning.extract import Extractor, decode_html
from cleaning.filters import DocumentFilter, clean_text
from webtext import pipeline
from webtext.config import CleanConfig
from webtext.schemas import PAGES

SENTENCES = [
    "The city council met on Tuesday to discuss the new budget for public libraries.",
    "Several residents spoke in favour of longer opening hours during the winter months.",
    "A local historian explained how the oldest branch was founded by a group of teachers.",
    "The mayor promised that no branch would close before the end of next year.",
    "Volunteers have repaired hundreds of donated books since the program started.",
    "Children from the primary school presented drawings of their favourite stories.",
]


def article(paragraphs: int = 6, lang_text: list[str] = SENTENCES) -> str:
    body = "".join(f"<p>{' '.join(lang_text[(i + j) % len(lang_text)] for j in range(4))}</p>" for i in range(paragraphs))
    return (
        "<html><head><title>Library budget</title></head><body>"
        "<nav><ul><li><a href='/'>Home</a></li><li><a href='/news'>News</a></li><li>Sports</li></ul></nav>"
        "<div class='ad'>Buy one get one free at the mall this weekend only!</div>"
        f"<article><h1>Library budget</h1>{body}</article>"
        "<footer>Copyright 2024 The Town Paper. All rights reserved.</footer></body></html>"
    )


FRENCH = [
    "Le conseil municipal s'est réuni mardi pour discuter du nouveau budget des bibliothèques.",
    "Plusieurs habitants ont demandé des horaires plus longs pendant les mois d'hiver.",
    "Le maire a promis qu'aucune bibliothèque ne fermerait avant la fin de l'année prochaine.",
]


def page(url, html=None, status="ok", content_type="text/html; charset=utf-8"):
    return {"url": url, "status": status, "content_type": content_type, "html": html, "karma": 3}


def test_extracts_main_text_without_boilerplate():
    doc = Extractor(CleanConfig()).extract(page("http://example.com/a", article().encode()))
    assert doc["drop_reason"] is None
    assert "city council met on Tuesday" in doc["text"]
    assert "Buy one get one" not in doc["text"] and "All rights reserved" not in doc["text"]
    assert doc["title"] == "Library budget" and doc["language"] == "en" and doc["n_words"] > 100
    assert len(doc["id"]) == 32


def test_drop_reasons():
    extractor = Extractor(CleanConfig())
    reasons = {
        "http_error": page("http://e.com/1", None, status="http_error"),
        "not_html": page("http://e.com/2", None, status="not_html"),
        "wrong_language": page("http://e.com/3", article(lang_text=FRENCH).encode()),
        "too_short": page("http://e.com/4", b"<html><body><article><p>Just a few words here, nothing more.</p></article></body></html>"),
        "extraction_failed": page("http://e.com/5", b"<html><body></body></html>"),
    }
    for reason, row in reasons.items():
        assert extractor.extract(row)["drop_reason"] == reason, reason


def test_charset_from_meta_when_header_has_none():
    html = "<html><head><meta charset='windows-1251'></head><body><p>Привет, мир</p></body></html>".encode("cp1251")
    assert "Привет, мир" in decode_html(html, "text/html")
    assert "Привет, мир" in decode_html("<p>Привет, мир</p>".encode("utf-8"), "text/html; charset=utf-8")


def test_clean_text_repairs_mojibake_and_whitespace():
    assert clean_text("CafÃ©   au  lait\n\n\n\nnext   line  ") == "Café au lait\n\nnext line"


def test_quality_rules():
    f = DocumentFilter(CleanConfig(min_words=5))
    good = " ".join(SENTENCES)
    assert f.reason(good, "en", 0.99) is None
    assert f.reason("# " * 30 + good, "en", 0.99) == "symbol_ratio"
    assert f.reason("\n".join(["Same line repeated here."] * 10 + [good]), "en", 0.99) == "repeated_lines"
    assert f.reason("Please enable JavaScript. Are you a robot? " + good, "en", 0.99) == "boilerplate"
    assert f.reason("1 2 3 4 5 6 7 8 9 10 11 12 " + "a b", "en", 0.99) == "mean_word_length"
    assert f.reason(good, "en", 0.2) == "wrong_language"
    assert DocumentFilter(CleanConfig(min_words=5, languages=[])).reason(good, "fr", 0.9) is None


def test_extract_stage_on_ray_counts_every_page(tmp_path, local_ray):
    rows = [page(f"http://example.com/{i}", article().replace("Library", f"Library {i}").encode()) for i in range(5)]
    rows += [page("http://example.com/missing", None, status="http_error"), page("http://example.com/fr", article(lang_text=FRENCH).encode())]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAGES), tmp_path / "pages.parquet")
    stats = pipeline.extract(tmp_path / "pages.parquet", tmp_path / "docs", CleanConfig())
    assert (stats.input, stats.output) == (7, 5)
    assert dict(stats.dropped) == {"http_error": 1, "wrong_language": 1}
    docs = pq.read_table(tmp_path / "docs")
    assert docs.num_rows == 5 and "drop_reason" not in docs.column_names
    assert set(docs.column("karma").to_pylist()) == {3}  # provenance travels with the document


def test_extract_accepts_any_parquet_with_url_and_html(tmp_path, local_ray):
    pq.write_table(pa.table({"url": ["http://x.org/a"], "html": [article().encode()]}), tmp_path / "mine.parquet")
    stats = pipeline.extract(tmp_path / "mine.parquet", tmp_path / "docs", CleanConfig())
    assert stats.output == 1
    pq.write_table(pa.table({"url": ["http://x.org/a"]}), tmp_path / "bad.parquet")
    try:
        pipeline.extract(tmp_path / "bad.parquet", tmp_path / "docs2", CleanConfig())
    except ValueError as exc:
        assert "bad.parquet" in str(exc) and "html" in str(exc)
    else:
        raise AssertionError("a table without html must be refused")
