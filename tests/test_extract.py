"""Extraction and cleaning on real trafilatura and resiliparse, with every drop reason exercised."""

from __future__ import annotations

from collections import Counter

import lxml.html
import pyarrow as pa
import pyarrow.parquet as pq

from cleaning.boilerplate import RULES, cut_trailing_section, remove_boilerplate_lines
from cleaning.extract import EXTRACT, EXTRACTED, Extractor, page_type
from cleaning.filters import DocumentFilter, clean_text, drop_repeated_lines, duplicate_char_fraction
from webtext.core.config import ExtractConfig
from webtext.core.runner import run_stage
from webtext.core.schemas import PAGES
from webtext.core.tokenizer import gpt2_encoding

SENTENCES = [
    "The city council met on Tuesday to discuss the new budget for public libraries.",
    "Several residents spoke in favour of longer opening hours during the winter months.",
    "A local historian explained how the oldest branch was founded by a group of teachers.",
    "The mayor promised that no branch would close before the end of next year.",
    "Volunteers have repaired hundreds of donated books since the program started.",
    "Children from the primary school presented drawings of their favourite stories.",
]


def article(paragraphs: int = 6, lang_text: list[str] = SENTENCES) -> str:
    body = "".join(
        f"<p>{' '.join(lang_text[(i + j) % len(lang_text)] for j in range(4))}</p>" for i in range(paragraphs)
    )
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
    doc = Extractor(ExtractConfig()).extract(page("http://example.com/a", article().encode()))
    assert doc["drop_reason"] is None
    assert "city council met on Tuesday" in doc["text"]
    assert "Buy one get one" not in doc["text"] and "All rights reserved" not in doc["text"]
    assert doc["title"] == "Library budget" and doc["language"] == "en" and doc["n_words"] > 100
    assert doc["n_tokens"] == len(gpt2_encoding().encode_ordinary(doc["text"])) > doc["n_words"]
    assert len(doc["id"]) == 32


def test_full_metadata_title_from_trafilatura():
    doc = Extractor(ExtractConfig(full_metadata=True)).extract(page("http://example.com/a", article().encode()))
    assert doc["drop_reason"] is None and doc["title"] == "Library budget"


def test_drop_reasons():
    extractor = Extractor(ExtractConfig())
    reasons = {
        "http_error": page("http://e.com/1", None, status="http_error"),
        "not_html": page("http://e.com/2", None, status="not_html"),
        "wrong_language": page("http://e.com/3", article(lang_text=FRENCH).encode()),
        "too_short": page(
            "http://e.com/4",
            b"<html><body><article><p>Just a few words here, nothing more.</p></article></body></html>",
        ),
        "extraction_failed": page("http://e.com/5", b"<html><body></body></html>"),
        "empty_page": page("http://e.com/6", b""),
        "invalid_url": page(None, article().encode()),
    }
    for reason, row in reasons.items():
        assert extractor.extract(row)["drop_reason"] == reason, reason


def test_guards_size_time_and_exceptions():
    big = page("http://e.com/big", article(paragraphs=200).encode())
    assert Extractor(ExtractConfig(max_html_bytes=10_000)).extract(big)["drop_reason"] == "html_too_large"
    assert Extractor(ExtractConfig(time_budget_s=1e-9)).extract(big)["drop_reason"] == "extraction_timeout"

    class Failing(Extractor):  # the guard under test is Extractor.extract; this page makes extraction raise
        def text_and_title(self, html, url):
            raise RecursionError("maximum recursion depth exceeded")

    assert Failing(ExtractConfig()).extract(big)["drop_reason"] == "extraction_error"


def test_hostile_pages_never_fail_a_batch():
    nested = ("<html><body>" + "<div>" * 50_000 + "deep" + "</div>" * 50_000 + "</body></html>").encode()
    rows = [
        page("http://e.com/nested", nested),
        page("http://e.com/binary", bytes(range(256)) * 400),
        page("http://e.com/good", article().encode()),
    ]
    out = Extractor(ExtractConfig())(pa.Table.from_pylist(rows, schema=PAGES))
    assert out.num_rows == 3 and out.schema == EXTRACTED
    assert out.column("drop_reason").to_pylist()[2] is None
    assert all(reason for reason in out.column("drop_reason").to_pylist()[:2])


def test_batch_accepts_string_html_and_counts_null_urls():
    table = pa.table({"url": ["http://x.org/a", None], "html": [article(), article()]})
    out = Extractor(ExtractConfig())(table)
    assert out.column("drop_reason").to_pylist() == [None, "invalid_url"]
    assert "city council" in out.column("text")[0].as_py()


WRONG_HEADER = "text/html; charset=utf-8"


def test_misdeclared_charsets_are_repaired():
    pages = {
        "cp1252": "Le café était plein. Une idée naïve: un résumé de la soirée, à côté du théâtre où l'on joue.",
        "shift_jis": "東京の図書館は新しい予算について火曜日に会議を開きました。多くの住民が冬の間の開館時間の延長を求めました。",
        "gbk": "市议会星期二开会讨论公共图书馆的新预算。许多居民要求在冬季延长开放时间。一位历史学家介绍了最古老分馆的历史。",
    }
    extractor = Extractor(ExtractConfig(languages=[], min_words=0, max_mean_word_length=1000))  # CJK: no spaces
    for encoding, sentence in pages.items():
        html = f"<html><body><article><p>{sentence} {sentence}</p></article></body></html>".encode(encoding)
        doc = extractor.extract(page(f"http://e.com/{encoding}", html, content_type=WRONG_HEADER))
        assert "\ufffd" not in doc["text"] and sentence in doc["text"], encoding
        assert doc["drop_reason"] is None, encoding


def test_undecodable_page_is_dropped_as_bad_encoding():
    text = " ".join(SENTENCES).encode()
    garbled = b" ".join(word + b"\xff\xfe\x81" for word in text.split())  # invalid in every charset tried
    html = b"<html><body><article><p>" + garbled + b"</p></article></body></html>"
    doc = Extractor(ExtractConfig(min_words=5)).extract(page("http://e.com/x", html, content_type=WRONG_HEADER))
    assert doc["drop_reason"] == "bad_encoding"


def test_clean_text_repairs_mojibake_and_whitespace():
    assert clean_text("CafÃ©   au  lait\n\n\n\nnext   line  ") == "Café au lait\n\nnext line"


def test_repetition_counts_characters_not_lines():
    good = " ".join(SENTENCES)
    forum = "\n".join(f"{sentence} {good}\nReply" for sentence in SENTENCES)  # "Reply" 6 times: few characters
    assert duplicate_char_fraction(forum.splitlines()) < 0.01
    f = DocumentFilter(ExtractConfig(min_words=5))
    assert f.reason(forum, "en", 0.99) is None
    assert f.reason("\n".join([SENTENCES[0]] * 10 + [good]), "en", 0.99) == "repeated_lines"
    paragraphs = "\n\n".join([f"{SENTENCES[1]}\n{SENTENCES[2]}"] * 4 + [good])  # repeated two-line blocks
    assert (
        DocumentFilter(ExtractConfig(min_words=5, max_duplicate_line_chars=1.0)).reason(paragraphs, "en", 0.99)
        == "repeated_paragraphs"
    )


def test_repeated_long_lines_are_removed_short_ones_kept():
    text = "\n".join([SENTENCES[0], "Reply", SENTENCES[1], "Reply", SENTENCES[0]])
    assert drop_repeated_lines(text, 20) == "\n".join([SENTENCES[0], "Reply", SENTENCES[1], "Reply"])


def test_repeated_code_lines_are_kept():
    code = "client = Client(account_sid, auth_token)"  # the same statement in two language tabs
    text = "\n".join([SENTENCES[0], code, SENTENCES[1], code, SENTENCES[1]])
    assert drop_repeated_lines(text, 20) == "\n".join([SENTENCES[0], code, SENTENCES[1], code])


def test_table_rows_and_the_pages_own_code_lines_are_kept():
    header = "| Attribute | Data Type | Description |"  # a header row repeated down a long table
    statement = "from pydantic import BaseModel, Field"  # prose-like by punctuation, but a code line
    text = "\n".join([header, SENTENCES[0], header, statement, SENTENCES[1], statement])
    assert drop_repeated_lines(text, 20) == "\n".join([header, SENTENCES[0], header, statement, SENTENCES[1]])
    assert drop_repeated_lines(text, 20, frozenset([statement])) == text


def test_code_blocks_repeated_across_tabs_survive_extraction():
    statement = "from pydantic import BaseModel, Field"
    tabs = "".join(
        f"<h2>Example {n}</h2><p>{SENTENCES[n]} {SENTENCES[n + 1]}</p><pre><code>{statement}\n"
        f"model_{n} = BaseModel()</code></pre>"
        for n in range(4)
    )
    html = f"<html><body><article><h1>Models</h1><p>{' '.join(SENTENCES)}</p>{tabs}</article></body></html>"
    doc = Extractor(ExtractConfig(min_words=5)).extract(page("http://e.com/docs", html.encode()))
    assert doc["drop_reason"] is None and doc["text"].count(statement) == 4
    prose = (
        html.replace("<pre><code>", "<p>").replace("\n", "</p><p>").replace("</code></pre>", "</p>")
    )  # as prose: repaired
    assert (
        Extractor(ExtractConfig(min_words=5))
        .extract(page("http://e.com/docs", prose.encode()))["text"]
        .count(statement)
        == 1
    )


def discussion(post_paragraphs: int, replies: int) -> bytes:
    """A post and its comment section, which trafilatura (include_comments off) leaves out."""
    post = "".join(
        f"<p>{' '.join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(4))}</p>" for i in range(post_paragraphs)
    )
    comments = "".join(
        f'<div class="comment"><p class="author">user{i}</p><p>Reply {i}: {SENTENCES[i % len(SENTENCES)].lower()} '
        f"That matches what happened in our town number {i} as well.</p></div>"
        for i in range(replies)
    )
    return (
        f"<html><head><title>Thread</title></head><body><nav><a href='/'>Home</a></nav><article><h1>Thread</h1>"
        f'{post}</article><section id="comments" class="comments">{comments}</section></body></html>'
    ).encode()


def test_fallback_keeps_comments_only_where_they_are_the_page():
    under_article = discussion(post_paragraphs=6, replies=8)  # comments: under half of the page's text
    doc = Extractor(ExtractConfig()).extract(page("http://e.com/news", under_article))
    assert doc["drop_reason"] is None and SENTENCES[0] in doc["text"] and "Reply 0:" not in doc["text"]
    kept = Extractor(ExtractConfig(fallback_comments_share=0)).extract(page("http://e.com/news", under_article))
    assert "Reply 0:" in kept["text"]  # the rule, not the extractors, left them out above
    thread = discussion(post_paragraphs=1, replies=30)  # the replies are most of the text: a forum thread
    doc = Extractor(ExtractConfig()).extract(page("http://e.com/thread", thread))
    assert doc["drop_reason"] is None and all(f"Reply {i}:" in doc["text"] for i in range(30))


def test_quality_rules():
    f = DocumentFilter(ExtractConfig(min_words=5))
    good = " ".join(SENTENCES)
    assert f.reason(good, "en", 0.99) is None
    assert f.reason("# " * 30 + good, "en", 0.99) == "symbol_ratio"
    assert f.reason("Please enable JavaScript. Are you a robot? " + good, "en", 0.99) == "boilerplate"
    assert f.reason("1 2 3 4 5 6 7 8 9 10 11 12 " + "a b", "en", 0.99) == "mean_word_length"
    assert f.reason(good, "fr", 0.9) == "wrong_language"
    assert f.reason(good, "en", 0.2) is None and f.reason(good, "fr", 0.3) is None  # unsure: kept
    assert DocumentFilter(ExtractConfig(min_words=5, languages=[])).reason(good, "fr", 0.9) is None


def test_code_comments_are_not_hashtags():
    """A documentation page whose config sample is full of `#` banners and comments is kept: the page's
    own code lines do not count toward `symbol_ratio`; the same lines as prose still do."""
    banner = "#" * 60
    sections = [
        (f"# Section {i}: raise the limit for image thumbnails", f"$wgMaxShellMemory{i} = 512000;") for i in range(8)
    ]
    config = "\n".join(line for comment, setting in sections for line in (banner, comment, banner, setting))
    prose = "".join(f"<p>{' '.join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3))}</p>" for i in range(6))
    html = (
        f"<html><body><article><h1>Configuring the wiki</h1>{prose}<pre>{config}</pre>{prose}</article></body></html>"
    )
    doc = Extractor(ExtractConfig()).extract(page("http://e.com/docs/settings", html.encode()))
    assert doc["drop_reason"] is None and banner in doc["text"] and "$wgMaxShellMemory7" in doc["text"]
    f = DocumentFilter(ExtractConfig())
    assert f.reason(doc["text"], "en", 0.99) == "symbol_ratio"  # without the page's code lines: hashtags


MODELS = [("HX-800", 1999), ("HX-560", 279), ("HX-600", 599), ("Studio 2", 149), ("Mono S", 89), ("Duo 7", 349)]
GRID = "\n".join(
    f"Vendor: Arcadia Audio Model {model} Headphones Regular price ${price}.95 Sale price ${price}.95 Unit price per"
    for model, price in MODELS
)


def test_uncertain_language_is_kept_confident_other_language_dropped():
    f = DocumentFilter(ExtractConfig(min_words=5))
    lang, score = f.language(GRID)  # an English product grid: the identifier is unsure (Latin at ~0.2)
    assert score < 0.5 and f.reason(GRID, lang, score) is None
    french = " ".join(FRENCH * 3)
    lang, score = f.language(french)
    assert lang == "fr" and f.reason(french, lang, score) == "wrong_language"


def test_language_id_reads_sentences_not_menus():
    menu = "\n".join(["Accueil", "Produits", "Panier", "Compte", "Aide"] * 20)
    lang, score = DocumentFilter(ExtractConfig()).language(menu + "\n" + "\n".join(SENTENCES * 3))
    assert lang == "en" and score > 0.9


def typed(head: str = "", body: str = "<p>Text.</p>") -> str:
    return page_type(lxml.html.fromstring(f"<html><head>{head}</head><body>{body}</body></html>"))


LD = '<script type="application/ld+json">{{"@context": "https://schema.org", "@type": {}}}</script>'


def test_page_type_is_read_from_the_markup():
    assert typed('<meta property="og:type" content="article">') == "article"
    assert typed(LD.format('"NewsArticle"')) == "article"
    assert typed(body='<div itemscope itemtype="https://schema.org/BlogPosting"><p>Post.</p></div>') == "article"
    # a thread's or a shop's types win over the article type a site template puts on every page
    assert typed('<meta property="og:type" content="article">' + LD.format('"DiscussionForumPosting"')) == "forum"
    assert typed(LD.format('["QAPage", "WebPage"]')) == "forum"
    assert typed('<meta property="og:type" content="product">') == "product"
    assert typed(LD.format('"Product"')) == "product"
    assert typed(LD.format('"ItemList"')) == "listing"
    assert typed('<meta property="og:type" content="article">', "<article><p>Teaser.</p></article>" * 5) == "listing"
    assert typed('<meta property="og:type" content="website">', "<article><p>One post.</p></article>") == "other"


RULE_LINES = {
    "share": ["Share this article", "Share on Facebook", "Facebook | Twitter | Email"],
    "newsletter": ["Sign up for our newsletter", "Get the best stories delivered straight to your inbox."],
    "related": ["Related: Council approves the new bridge", "READ MORE:", "You may also like"],
    "photo_credit": ["Photo: Jane Smith/Getty Images", "(AP Photo/Evan Vucci)", "Image credit: Shutterstock"],
    "byline": ["By Jane Doe", "By Jane Doe and John Smith, Dec 10, 2025", "Written by Ana de la Cruz"],
    "date": ["December 10, 2025", "Published: 10 Oct 2025 at 3:45 pm EST", "Updated 2025-10-01 | 5 min read"],
    "cookie": [
        "We use cookies to provide you with the best possible experience. By continuing to use this site, you agree"
        " to our use of cookies. See Cookie Policy.",
        "This website uses cookies so that we can provide you with the best user experience possible.",
    ],
}
# Prose that starts like the boilerplate: a whole-line match is required, so these stay.
PROSE = [
    "Share prices fell sharply on Tuesday after the council published its budget.",
    "By the end of the year the city will open the new bridge to traffic.",
    "Related work on the river banks will start in December 10 days after the vote.",
    "Photographers gathered outside the library before dawn to catch the first light.",
    "The bakery sold four thousand cookies on the first morning, and the queue reached the bridge by noon.",
    "Browsers keep cookies for months, the regulator said, and most readers never clear them.",
]


def test_each_line_rule_removes_its_lines_and_keeps_prose():
    assert set(RULE_LINES) == set(RULES)
    for rule, lines in RULE_LINES.items():
        counts = Counter()
        text = "\n".join([PROSE[0], *lines, *PROSE[1:]])
        assert remove_boilerplate_lines(text, [rule], counts) == "\n".join(PROSE), rule
        assert counts == {rule: len(lines)}, rule
        others = [name for name in RULES if name != rule]
        assert remove_boilerplate_lines(text, others) == text, rule  # no other rule takes these lines
    assert remove_boilerplate_lines("\n".join(PROSE), list(RULES)) == "\n".join(PROSE)


def test_line_rules_leave_code_and_lists_alone():
    compose = "\n".join([PROSE[0], "services:", "image: postgres:18", "Image: Jane Smith"])
    assert remove_boilerplate_lines(compose, ["photo_credit"]) == "\n".join(
        [PROSE[0], "services:", "image: postgres:18"]
    )
    assert remove_boilerplate_lines(compose, ["photo_credit"], code_lines=frozenset(["Image: Jane Smith"])) == compose
    archive = "\n".join(f"{PROSE[i % 4]}\nDec {i + 1}, 2025" for i in range(6))  # a list of posts and their dates
    counts = Counter()
    assert remove_boilerplate_lines(archive, ["date"], counts) == archive and not counts


TEASERS = [
    "Council approves the new bridge",
    "Five walks along the river this autumn",
    "Jane Doe\nLocal reporter covering city hall",
]


def test_trailing_section_is_cut_after_its_heading_and_counted():
    body = "\n".join(PROSE * 2)
    for heading in ("Related stories", "More from City News", "You might also like", "About the author", "3 Comments"):
        counts = Counter()
        text = "\n".join([body, heading, *TEASERS])
        assert cut_trailing_section(text, counts) == body, heading
        assert counts == {"tail": 1 + len(TEASERS) + 1}, heading  # the heading and the lines after it


def test_trailing_section_needs_a_late_unique_heading_over_short_lines():
    body = "\n".join(PROSE * 2)
    early = "\n".join([PROSE[0], "Related stories", *TEASERS, body])  # in the first half: a box, not the end
    buttons = "\n".join([body, *[f"{t}\nRead more" for t in TEASERS[:2]]])  # one per teaser: a button
    prose = "\n".join([body, "Disclaimer", PROSE[0] + " " + PROSE[1]])  # followed by prose: kept
    alone = "\n".join([body, "Share this article"])  # nothing after it: a line rule's business
    code = "\n".join([body, "Tags", "name: web", "image: nginx"])
    for text in (early, buttons, prose, alone):
        counts = Counter()
        assert cut_trailing_section(text, counts) == text and not counts
    assert cut_trailing_section(code, code_lines=frozenset(["Tags"])) == code
    assert cut_trailing_section(code) == body


def test_extractor_cuts_the_related_list_after_an_article():
    related = "".join(f"<p>{t}</p>" for t in TEASERS[:2])  # teasers without links: trafilatura keeps them
    html = news("article").replace(b"<p>Share this article</p>", f"<h2>Related stories</h2>{related}".encode())
    doc = Extractor(ExtractConfig()).extract(page("http://e.com/news", html))
    assert doc["drop_reason"] is None and SENTENCES[0] in doc["text"]
    assert "Related stories" not in doc["text"] and TEASERS[0] not in doc["text"]
    assert doc["outcomes"].count("line_removed:tail") == 3
    other = Extractor(ExtractConfig()).extract(page("http://e.com/news", html.replace(b'"article"', b'"website"')))
    assert TEASERS[0] in other["text"] and other["outcomes"] == ["page_type:other"]  # only on article pages


def news(og_type: str) -> bytes:
    """An article whose extracted text keeps a byline, a date, a photo credit and a share prompt."""
    body = "".join(f"<p>{' '.join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(4))}</p>" for i in range(6))
    return (
        f'<html><head><meta property="og:type" content="{og_type}"><title>Library budget</title></head><body>'
        "<article><h1>Library budget</h1><p>By Jane Doe</p><p>December 10, 2025</p>"
        f"{body[:400]}<p>Photo: John Smith/Getty Images</p>{body[400:]}<p>Share this article</p>"
        "</article></body></html>"
    ).encode()


def test_line_rules_apply_to_article_pages_and_are_counted():
    extractor = Extractor(ExtractConfig())
    doc = extractor.extract(page("http://e.com/news", news("article")))
    assert doc["drop_reason"] is None and SENTENCES[0] in doc["text"]
    for line in ("By Jane Doe", "December 10, 2025", "Getty Images", "Share this article"):
        assert line not in doc["text"], line
    assert sorted(doc["outcomes"]) == [
        "line_removed:byline",
        "line_removed:date",
        "line_removed:photo_credit",
        "line_removed:share",
        "page_type:article",
    ]
    other = extractor.extract(page("http://e.com/page", news("website")))  # not typed an article: untouched
    assert "By Jane Doe" in other["text"] and other["outcomes"] == ["page_type:other"]
    off = Extractor(ExtractConfig(line_rules=[])).extract(page("http://e.com/news", news("article")))
    assert "By Jane Doe" in off["text"] and off["outcomes"] == ["page_type:article"]


def test_extract_stage_on_ray_counts_every_page(tmp_path, local_ray):
    rows = [page(f"http://example.com/{i}", article().replace("Library", f"Library {i}").encode()) for i in range(5)]
    rows += [
        page("http://example.com/missing", None, status="http_error"),
        page("http://example.com/fr", article(lang_text=FRENCH).encode()),
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAGES), tmp_path / "pages.parquet")
    stats = run_stage(EXTRACT, [str(tmp_path / "pages.parquet")], str(tmp_path / "docs"), ExtractConfig())
    assert (stats.input, stats.output) == (7, 5)
    assert dict(stats.dropped) == {"http_error": 1, "wrong_language": 1}
    assert stats.outcomes == {"page_type:other": 6}  # no og:type: not an article, no line rules
    docs = pq.read_table(tmp_path / "docs")
    assert docs.num_rows == 5 and "drop_reason" not in docs.column_names
    assert set(docs.column("karma").to_pylist()) == {3}  # provenance travels with the document
    assert min(docs.column("n_tokens").to_pylist()) > 100


def test_extract_stage_accepts_string_html_and_null_urls(tmp_path, local_ray):
    pq.write_table(
        pa.table({"url": ["http://x.org/a", None], "html": [article(), article()]}), tmp_path / "mine.parquet"
    )
    stats = run_stage(EXTRACT, [str(tmp_path / "mine.parquet")], str(tmp_path / "docs"), ExtractConfig())
    assert (stats.output, dict(stats.dropped)) == (1, {"invalid_url": 1})


def test_extract_stage_reports_the_lines_each_rule_removed(tmp_path, local_ray):
    rows = [
        page(f"http://example.com/{i}", news("article").replace(b"Library", f"Library {i}".encode())) for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAGES), tmp_path / "pages.parquet")
    stats = run_stage(EXTRACT, [str(tmp_path / "pages.parquet")], str(tmp_path / "docs"), ExtractConfig())
    assert stats.output == 3 and dict(stats.outcomes) == {
        "page_type:article": 3,
        "line_removed:byline": 3,
        "line_removed:date": 3,
        "line_removed:photo_credit": 3,
        "line_removed:share": 3,
    }
    assert "outcomes" not in pq.read_table(tmp_path / "docs").column_names
