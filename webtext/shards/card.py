"""The dataset card: `README.md` beside the shards, in the Hugging Face dataset-card format.

The YAML header's `configs` makes `datasets.load_dataset(folder)` (and the Hub viewer) find
`data/*.parquet`; the prose below it is generated from the manifest's figures, so the card never
disagrees with the files it describes.
"""

from __future__ import annotations

import json

import yaml

from webtext.core import storage
from webtext.shards import summary

CARD = "README.md"

COLUMNS = {
    "id": "document id: the first 16 bytes of sha256 of the normalized URL, in hex",
    "url": "normalized URL of the page",
    "domain": "registered domain of the URL",
    "reddit_ids": "ids of the Reddit submissions that linked the URL",
    "subreddits": "subreddits of those submissions",
    "scores": "scores (karma) of those submissions",
    "titles": "titles of those submissions",
    "created_utc": "first submission time, seconds since the epoch",
    "karma": "the score the karma rule compared with its threshold",
    "text": "extracted main text (trafilatura), cleaned",
    "title": "page title",
    "language": "detected language",
    "language_score": "language detector confidence",
    "n_words": "whitespace-separated words in `text`",
    "n_chars": "characters in `text`",
    "n_tokens": "GPT-2 BPE tokens in `text`",
    "final_url": "URL after redirects",
    "fetched_at": "when the page was fetched (UTC)",
    "duplicate_cluster": "id of the surviving document of its near-duplicate cluster",
    "eval_ngram_matches": "n-grams shared with the evaluation sets (0 for kept documents)",
}

REASONS = {
    "low_karma": "submission karma below the threshold (GPT-2 paper: 3)",
    "self_post": "Reddit self post: no outbound link",
    "reddit_link": "link back to Reddit",
    "media_domain": "image, video or audio host",
    "wikipedia": "Wikipedia (removed by the GPT-2 paper to avoid overlap with evaluation sets)",
    "blocked_domain": "domain on the block list",
    "nsfw": "submission marked over-18",
    "malformed": "URL that cannot be parsed",
    "not_html": "response is not HTML",
    "http_error": "HTTP error status",
    "wrong_language": "text not in the configured languages",
    "too_short": "fewer words than the minimum",
    "exact_duplicate": "same normalized text as a kept document",
    "near_duplicate": "MinHash-LSH near duplicate of a kept document",
    "contaminated": "shares an n-gram with an evaluation set",
    "duplicate_id": "a second document with an id already written",
    "duplicate_url": "URL already submitted (one document per normalized URL)",
    "file_extension": "URL of a non-HTML file (image, video, archive, ...)",
    "redirect_loop": "redirects that never reach a page",
    "robots_denied": "disallowed by the site's robots.txt",
    "timeout": "no response in time",
    "host_unreachable": "host never answered (refused, silent, or robots.txt unreachable: RFC 9309 complete disallow)",
    "robots_unreachable": "robots.txt answered 429 or 5xx: complete disallow (RFC 9309)",
    "dns_error": "host name did not resolve in time",
}


def size_category(n: int) -> str:
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    return next((label for bound, label in bounds if n < bound), "n>1T")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _header(manifest: dict) -> str:
    languages = ((manifest.get("config") or {}).get("extract") or {}).get("languages") or ["en"]
    meta = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
        "language": languages,
        "license": "other",  # the texts keep their authors' copyright
        "task_categories": ["text-generation"],
        "size_categories": [size_category(manifest["documents"])],
        "pretty_name": "WebText (webtext build)",
        "tags": ["webtext", "reddit", "web-crawl", "gpt-2"],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _examples(stage: dict, reason: str) -> str:
    """A link from the shards' card to the stage's examples of a drop reason, where the stage kept some."""
    if reason not in stage.get("samples", []):
        return ""
    return f"[examples](../{stage['stage']}/_dropped/{reason}.parquet)"


def render(manifest: dict, overlap: dict | None = None) -> str:
    """The card's Markdown for a manifest (and the decontaminate stage's overlap report, if any)."""
    totals = manifest.get("summary", {})
    config = manifest.get("config") or {}
    funnel = manifest.get("funnel", [])
    tokens = manifest.get("tokens")
    parts = [_header(manifest), "# WebText (webtext build)\n"]
    parts.append(
        f"A GPT-2 WebText-style corpus: the text of web pages linked from Reddit submissions, built by webtext. "
        f"{manifest['documents']:,} documents, {manifest.get('words', 0):,} words, "
        f"{f'{tokens:,} GPT-2 tokens' if tokens is not None else 'GPT-2 tokens n/a'}, "
        f"{len(manifest['shards'])} Parquet shard(s), {manifest.get('bytes', 0):,} bytes; schema version "
        f"{manifest['schema_version']}.\n"
    )
    parts.append(
        '## Loading\n\n```python\nfrom datasets import load_dataset\nds = load_dataset("path/to/shards")  # this card\'s configs\n'
        'ds = load_dataset("parquet", data_files="path/to/shards/data/*.parquet")\n'
        'import pandas, polars, duckdb, pyarrow.parquet as pq\npq.read_table("path/to/shards/data")\n'
        'pandas.read_parquet("path/to/shards/data")\npolars.read_parquet("path/to/shards/data/*.parquet")\n'
        "duckdb.sql(\"select count(*) from 'path/to/shards/data/*.parquet'\")\n```\n\n"
        "Each shard's rows, bytes and sha256 are in `manifest.json`; `webtext validate` checks them.\n"
    )
    harvest = config.get("harvest") or {}
    dumps = config.get("dumps") or []
    parts.append(
        "## Sources\n\n"
        f"Outbound links of Reddit submissions"
        f"{f' ({len(dumps)} dump file(s): ' + ', '.join(storage.name(d) for d in dumps[:10]) + ')' if dumps else ''}, "
        f"kept when a submission reached {harvest.get('min_karma', 3)} karma "
        f"(rule `{harvest.get('karma_rule', 'submission')}`); pages crawled, main text extracted with trafilatura.\n"
    )
    for key, label in (("domains", "domain"), ("subreddits", "subreddit")):
        top = list(totals.get(key, {}).items())[:15]
        if top:
            parts.append(
                f"Top {label}s (documents):\n\n" + _table([label, "documents"], [[k, f"{v:,}"] for k, v in top]) + "\n"
            )
    if funnel:
        parts.append(
            "## Funnel\n\n"
            + _table(
                ["stage", "unit", "in", "out", "dropped"],
                [
                    [
                        s["stage"],
                        s["unit"],
                        f"{s['input']:,}",
                        f"{s['output']:,}",
                        f"{sum(s.get('dropped', {}).values()):,}",
                    ]
                    for s in funnel
                ],
            )
            + "\n"
        )
    removed = [
        [s["stage"], reason, f"{n:,}", REASONS.get(reason, ""), _examples(s, reason)]
        for s in funnel
        for reason, n in sorted(s.get("dropped", {}).items(), key=lambda kv: -kv[1])
    ]
    parts.append(
        "## What was removed and why\n\n"
        + (
            _table(["stage", "reason", "count", "why", "examples"], removed)
            + "\nExamples: the same rows of each reason on every build, in the build's `<stage>/_dropped/<reason>.parquet`; "
            "`webtext inspect OUT/<stage> --dropped <reason>` shows them.\n"
            if removed
            else "Nothing was removed."
        )
        + "\n"
    )
    parts.append(_decontamination(funnel, config, overlap, totals))
    histogram = totals.get("words_histogram")
    if histogram and sum(histogram):
        edges = summary.WORD_EDGES
        rows = [
            [f"{edges[i]:,}–{edges[i + 1] - 1:,}" if i + 2 < len(edges) else f"≥ {edges[i]:,}", f"{n:,}"]
            for i, n in enumerate(histogram)
            if n
        ]
        parts.append("## Document length\n\n" + _table(["words", "documents"], rows) + "\n")
    parts.append(
        "## Schema\n\n"
        + _table(
            ["column", "type", "description"],
            [[f"`{c['name']}`", f"`{c['type']}`", COLUMNS.get(c["name"], "")] for c in manifest.get("schema", [])],
        )
        + "\n"
    )
    parts.append(
        "## Known limitations\n\n"
        "- Web text linked from Reddit reflects Reddit's users, topics and biases; it is not filtered for toxicity or personal data.\n"
        "- Pages are as fetched at crawl time, not as they were when submitted; dead links are missing.\n"
        "- Near-duplicate removal is approximate (MinHash LSH); decontamination covers only the evaluation sets listed above, "
        "by exact normalized n-grams.\n"
        "- Documents are shuffled by id hash across shards and sorted by id within a shard; there is no other order.\n"
        "- Copyright of the texts stays with their authors; check the terms before redistributing.\n"
    )
    libraries = manifest.get("libraries", {})
    parts.append(
        "## Provenance\n\nBuilt "
        + manifest.get("created", "")
        + " with "
        + ", ".join(f"{k} {v}" for k, v in libraries.items() if v != "not installed")
        + ". The full build config is in `manifest.json` (`config`).\n"
    )
    return "\n".join(parts)


def _decontamination(
    funnel: list[dict], config: dict, overlap: dict | None, manifest_summary: dict | None = None
) -> str:
    stage = next((s for s in funnel if s["stage"] == "decontaminate"), None)
    if stage is None and overlap is None and not (manifest_summary or {}).get("with_eval_ngrams"):
        return "## Decontamination\n\nThis build did not run the decontaminate stage.\n"
    section = config.get("decontaminate") or {}
    evalsets = [storage.name(e) for e in section.get("evalsets", [])]
    text = "## Decontamination\n\n"
    if stage is not None:
        text += (
            f"Documents sharing a normalized {section.get('ngram', 8)}-gram with "
            f"{', '.join(evalsets) if evalsets else 'the evaluation sets'} were removed: "
            f"{stage.get('dropped', {}).get('contaminated', 0):,} of {stage['input']:,}.\n"
        )
        if stage.get("outcomes"):
            text += (
                "\n" + _table(["outcome", "documents"], [[k, f"{v:,}"] for k, v in stage["outcomes"].items()]) + "\n"
            )
    flagged = (manifest_summary or {}).get("with_eval_ngrams", 0)
    if flagged:
        text += f"\n{flagged:,} document(s) in these shards share n-grams with an evaluation set (flagged in `eval_ngram_matches`, kept).\n"
    if overlap and isinstance(overlap.get("sets"), dict):
        text += (
            f"\nShare of each evaluation set's {overlap.get('ngram', section.get('ngram', 8))}-grams found in the documents "
            f"before decontamination (GPT-2 paper, Table 6):\n\n"
        )
        text += (
            _table(
                ["eval set", "n-grams", "found", "% in corpus"],
                [
                    [name, f"{row.get('ngrams', 0):,}", f"{row.get('found', 0):,}", f"{row.get('percent', 0):.2f}%"]
                    for name, row in overlap["sets"].items()
                ],
            )
            + "\n"
        )
    elif overlap:
        text += "\nOverlap report of the decontaminate stage:\n\n```json\n" + _json(overlap) + "\n```\n"
    return text


def _json(value) -> str:
    text = json.dumps(value, indent=2)
    return text if len(text) < 4000 else text[:4000] + "\n..."


def write_card(out: str, manifest: dict, overlap: dict | None = None) -> None:
    storage.write_text(storage.join(out, CARD), render(manifest, overlap))
