"""Extract: pages (url + html bytes) in, documents (id, url, text + metadata) out.

The batch function returns every input row once, in order: kept rows have `drop_reason` null, the
others say why they went. One hostile page never fails a batch: pages over a size cap are not
parsed (`html_too_large`), an exception while extracting one page drops that page
(`extraction_error`), and a page whose extraction used more than its CPU budget is dropped
(`extraction_timeout`, measured on the worker thread's CPU clock so that a loaded machine does not
time out ordinary pages). Extraction settings, the fallback rule and the quality thresholds were
chosen on the WCXB dev set with benchmarks/extraction_eval.py.
"""

from __future__ import annotations

import re
import time
import traceback
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import trafilatura
from lxml.html import HtmlElement
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

from cleaning.boilerplate import cut_trailing_section, remove_boilerplate_lines
from cleaning.encoding import decode_html
from cleaning.filters import DocumentFilter, clean_line, clean_text, drop_repeated_lines
from webtext.core.config import ExtractConfig
from webtext.core.ids import url_id
from webtext.core.schemas import DOCS, PAGES, PROVENANCE_FIELDS
from webtext.core.stage import ERROR, OUTCOMES, Resources, Stage, constant_default, null_default
from webtext.core.tokenizer import gpt2_encoding

DROP_REASON = pa.field("drop_reason", pa.string())
# `outcomes`: the page's structural type and one label per line a rule removed, counted in the stage's stats
EXTRACTED = (
    DOCS.append(DROP_REASON).append(pa.field(OUTCOMES, pa.list_(pa.string()))).append(pa.field(ERROR, pa.string()))
)

# Cheap title: the first of these that yields text (trafilatura's metadata pass costs ~20% of a page).
TITLE_XPATHS = ['//meta[@property="og:title"]/@content', "//title//text()", "//h1//text()"]
# lxml stops nesting at depth 256; resiliparse does not, and is quadratic in depth (50,000 nested
# <div>s: ~40 s). A tree this deep is skipped by the fallback; the check is one C-level XPath walk.
TOO_DEEP = "boolean(" + "/*" * 250 + ")"
CODE_BLOCKS = "//pre|//code"
OG_TYPE = '//meta[@property="og:type" or @name="og:type"]/@content'
LD_JSON = '//script[@type="application/ld+json"]/text()'
LD_TYPE = re.compile(r'"@type"\s*:\s*(\[[^\]]*\]|"[^"]*")')
ARTICLE_TYPES = {
    "Article",
    "NewsArticle",
    "BlogPosting",
    "Report",
    "TechArticle",
    "ScholarlyArticle",
    "LiveBlogPosting",
    "AnalysisNewsArticle",
    "OpinionNewsArticle",
    "ReportageNewsArticle",
    "ReviewNewsArticle",
}
FORUM_TYPES = {"DiscussionForumPosting", "QAPage", "Comment"}
PRODUCT_TYPES = {"Product", "ProductGroup", "Offer"}
LISTING_TYPES = {"ItemList", "CollectionPage", "SearchResultsPage"}


def page_title(tree: HtmlElement) -> str | None:
    for xpath in TITLE_XPATHS:
        found = " ".join(str(part).strip() for part in tree.xpath(xpath)[:8]).strip()
        if found:
            return " ".join(found.split())[:1000]
    return None


def page_type(tree: HtmlElement) -> str:
    """What the page is, from its markup alone: `forum`, `product`, `listing`, `article` or `other`.

    Read from og:type, the schema.org types of its JSON-LD and microdata, and how many `<article>`
    elements it has (five or more: a list of teasers). A thread's or a shop's types win over an
    article type the site template adds to every page. On WCXB dev: 537 of 793 article pages typed
    `article`, 79 of 113 forum pages `forum`; 77 pages of other WCXB types typed `article`.
    """
    scripts = " ".join(tree.xpath(LD_JSON))
    names = " ".join(LD_TYPE.findall(scripts)) + " " + " ".join(map(str, tree.xpath("//@itemtype")))
    types = set(re.findall(r"\w+", names.replace("schema.org/", " ")))
    og = next((str(v).strip().lower() for v in tree.xpath(OG_TYPE)), "")
    if types & FORUM_TYPES:
        return "forum"
    if "product" in og or (types & PRODUCT_TYPES and not types & ARTICLE_TYPES):
        return "product"
    if (types & LISTING_TYPES and not types & ARTICLE_TYPES) or tree.xpath("count(//article)") >= 5:
        return "listing"
    return "article" if og == "article" or types & ARTICLE_TYPES else "other"


def code_lines(tree: HtmlElement, min_chars: int) -> frozenset[str]:
    """The page's own code lines (`<pre>`, `<code>`), cleaned as the text's lines are: code repeats
    legitimately, and the line repair must not take it for a block the extractor emitted twice."""
    return frozenset(
        line
        for block in tree.xpath(CODE_BLOCKS)
        for line in map(clean_line, block.text_content().splitlines())
        if len(line) >= min_chars
    )


def fallback_text(tree: HTMLTree, comments: bool) -> str:
    """resiliparse's main-content text: rescues pages (often forums) that trafilatura misses.

    Without the post's metadata block (author, date, tags): +0.0015 F1 on WCXB, no page type lower
    by more than 0.0003. `comments`: whether comment sections count as main content.
    """
    return extract_plain_text(
        tree,
        main_content=True,
        preserve_formatting=True,
        list_bullets=False,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
        comments=comments,
        post_meta=False,
    )


class Extractor:
    """trafilatura (plus a measured fallback) and cleaning; the stage's batch function."""

    def __init__(self, config: ExtractConfig):
        self.config = config
        self.filter = DocumentFilter(config)
        self.encoding = gpt2_encoding()

    def text_and_title(self, html: str, url: str) -> tuple[str, str | None, frozenset[str], str]:
        """Main text, title, the page's code lines and its type (read before trafilatura prunes the tree)."""
        c = self.config
        tree = trafilatura.load_html(html)
        if tree is None:
            return "", None, frozenset(), "other"
        title = None if c.full_metadata else page_title(tree)
        kind = page_type(tree)
        fallback = c.fallback and not tree.xpath(TOO_DEEP)
        code = code_lines(tree, c.repeated_line_min_chars)
        # Fast mode cuts documentation pages short (one tab, one section) where full mode keeps them.
        fast = c.fast and not (c.full_mode_for_code and tree.xpath("boolean(//pre)"))
        options = dict(
            url=url,
            with_metadata=c.full_metadata,
            favor_precision=c.favor_precision,
            favor_recall=c.favor_recall,
            include_comments=c.include_comments,
            include_tables=c.include_tables,
        )
        result = trafilatura.bare_extraction(tree, fast=fast, **options)
        text = result.text if result is not None and result.text else ""
        if fast and len(text) < c.full_mode_below_chars:
            # fast mode found (almost) nothing: trafilatura's full mode (its readability/jusText
            # fallbacks) on a fresh tree, since extraction prunes the one it is given.
            result = trafilatura.bare_extraction(trafilatura.load_html(html), fast=False, **options)
            text = result.text if result is not None and result.text else ""
        if c.full_metadata and result is not None:
            title = result.title
        if fallback:
            parsed = HTMLTree.parse(html)
            other = fallback_text(parsed, comments=True)
            if len(other) > c.fallback_min_ratio * len(text) and not c.include_comments:
                # Comment sections are the page on a forum thread or a Q&A page (most of the text);
                # under an article they are not its main text, as trafilatura's include_comments says.
                without = fallback_text(parsed, comments=False)
                if len(without) >= (1 - c.fallback_comments_share) * len(other):
                    other = without
            if len(other) > c.fallback_min_ratio * len(text):
                text = other
        return text, title, code, kind

    def extract(self, row: dict) -> dict:
        """One pages row to one documents row (with `drop_reason` set when it is not kept)."""
        doc = {name: row.get(name) for name in EXTRACTED.names if name in row}
        doc.update(id="", text="", drop_reason=None, outcomes=None)
        url = row.get("url")
        if not url or not isinstance(url, str):
            doc.update(url="", drop_reason="invalid_url")
            return doc
        doc["id"] = url_id(url)
        status = row.get("status") or "ok"
        body = row.get("html")
        if status != "ok" or not body:
            doc["drop_reason"] = status if status != "ok" else "empty_page"
            return doc
        if len(body) > self.config.max_html_bytes:
            doc["drop_reason"] = "html_too_large"
            return doc
        start = time.thread_time()
        try:
            html = decode_html(body, row.get("content_type"))
            text, title, code, kind = self.text_and_title(html, row.get("final_url") or url)
            text = drop_repeated_lines(clean_text(text), self.config.repeated_line_min_chars, code)
            removed: Counter = Counter()
            if kind in self.config.line_rules_for:
                # The trailing section goes first: its heading ("Related posts") is also a line rule's match.
                text = cut_trailing_section(text, removed, code)
                text = remove_boilerplate_lines(text, self.config.line_rules, removed, code)
            doc["outcomes"] = [f"page_type:{kind}"] + [f"line_removed:{rule}" for rule in removed.elements()]
        except Exception:  # one page's failure is that page's drop reason, never the batch's
            doc.update(drop_reason="extraction_error", error=traceback.format_exc())
            return doc
        seconds = time.thread_time() - start
        if seconds > self.config.time_budget_s:
            doc.update(
                drop_reason="extraction_timeout",
                error=f"extraction_timeout: {seconds:.1f} s of CPU, over extract.time_budget_s {self.config.time_budget_s:g}",
            )
            return doc
        if not text:
            doc["drop_reason"] = "extraction_failed"
            return doc
        doc.update(text=text, title=title, n_words=len(text.split()), n_chars=len(text))
        if text.count("\ufffd") > self.config.max_replacement_ratio * len(text):
            doc["drop_reason"] = "bad_encoding"
            return doc
        lang, score = self.filter.language(text)
        doc.update(language=lang, language_score=score, drop_reason=self.filter.reason(text, lang, score, code))
        if doc["drop_reason"] is None:
            doc["n_tokens"] = len(self.encoding.encode_ordinary(text))
        return doc

    def __call__(self, batch: pa.Table) -> pa.Table:
        if "html" in batch.column_names and pa.types.is_string(batch.schema.field("html").type):
            batch = batch.set_column(
                batch.column_names.index("html"), "html", pc.cast(batch.column("html"), pa.binary())
            )
        return pa.Table.from_pylist([self.extract(row) for row in batch.to_pylist()], schema=EXTRACTED)


_FETCH = {f.name: f.type for f in PAGES}

EXTRACT = Stage(
    name="extract",
    unit="pages",
    required={"url": pa.string(), "html": pa.binary()},
    optional={
        "status": (pa.string(), constant_default("ok", pa.string())),
        **{name: (_FETCH[name], null_default(_FETCH[name])) for name in ("content_type", "final_url", "fetched_at")},
        **{f.name: (f.type, null_default(f.type)) for f in PROVENANCE_FIELDS if f.name != "url"},
    },
    output=DOCS,
    setup=lambda config: Extractor(config),
    # No memory reservation: on Ray Data it made the map tasks run one at a time on a 2-CPU node
    # (measured); 64 pages of at most max_html_bytes bound a batch instead.
    resources=Resources(num_cpus=1, batch_size=64),
    error_reasons=("extraction_error", "extraction_timeout"),  # code that raised or ran away: the error budget
    description="main text of each page (trafilatura + resiliparse fallback), cleaned and filtered",
)
