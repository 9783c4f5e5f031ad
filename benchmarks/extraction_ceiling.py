"""How far article precision can go on WCXB dev: the Extractor's variants, and two oracles that read the truth.

    .venv/bin/python benchmarks/extraction_ceiling.py [--data DIR] [--limit N] [--jobs 2]

Systems, each the real Extractor (clean, repair, line rules, filters) under an ExtractConfig override:
`current` (defaults), `precise` (favor_precision), `no_fallback`, `full_mode` (fast off) and
`fallback_1x` (resiliparse whenever its text is longer). Two upper bounds, which no extractor can
reach because they read the ground truth:
- `page oracle`: per page, the system with the highest precision among those whose recall is within
  0.01 of `current`'s: what any per-page choice between these extractors and settings can give;
- `line oracle`: `current`'s text on pages it keeps, less every line with under half of its word
  3-grams in the truth, on article-typed pages (where the line rules run) and then on every page: what
  any line-level boilerplate remover (rule or learned) can give.
Prints P/R/F1 per WCXB page type for each, and the gain over `current`.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cleaning.extract import Extractor
from cleaning.filters import DocumentFilter
from webtext.core.config import ExtractConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.extraction_eval import DATA, TYPES, load_pages, scorer  # noqa: E402

SYSTEMS = {
    "current": {},
    "precise": {"favor_precision": True},
    "no_fallback": {"fallback": False},
    "full_mode": {"fast": False},
    "fallback_1x": {"fallback_min_ratio": 1.0},
}
RECALL_SLACK = 0.01  # the page oracle may give up this much of `current`'s recall on a page
LINE_KEEP = 0.5  # the line oracle keeps a line with at least this share of its word 3-grams in the truth

_extractors: dict[str, Extractor] = {}


def _init() -> None:
    _extractors.update({name: Extractor(ExtractConfig(**overrides)) for name, overrides in SYSTEMS.items()})


def run_chunk(chunk: list[dict]) -> list[dict]:
    """Every system's text after the filters ("" when dropped), and the page's structural type."""
    out = []
    for page in chunk:
        row = {"url": page["url"], "html": gzip.decompress(Path(page["html"]).read_bytes()), "status": "ok"}
        docs = {name: extractor.extract(row) for name, extractor in _extractors.items()}
        texts = {name: "" if doc["drop_reason"] else doc["text"] for name, doc in docs.items()}
        kind = next((o[10:] for o in docs["current"]["outcomes"] or [] if o.startswith("page_type:")), "other")
        out.append({"id": page["id"], "texts": texts, "kind": kind})
    return out


def shingles(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def line_oracle(text: str, truth: str, tokenize, keep) -> str:
    """`text` without the lines that are mostly not in `truth`, then the quality filters again (`keep`)."""
    if not text:
        return ""
    truth_shingles = shingles(tokenize(truth))
    lines = []
    for line in text.split("\n"):
        words = tokenize(line)
        found = shingles(words) if words else set()
        if not found or len(found & truth_shingles) >= LINE_KEEP * len(found):
            lines.append(line)
    return keep("\n".join(lines).strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N pages only")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    module = scorer(args.data)
    pages = load_pages(args.data, args.limit)
    chunks = [pages[i :: args.jobs * 8] for i in range(args.jobs * 8)]
    with ProcessPoolExecutor(args.jobs, initializer=_init) as pool:
        results = {r["id"]: r for chunk in pool.map(run_chunk, chunks) for r in chunk}
    rows = [{**page, **results[page["id"]]} for page in pages]

    quality = DocumentFilter(ExtractConfig())

    def keep(text: str) -> str:
        if not text:
            return ""
        language, score = quality.language(text)
        return "" if quality.reason(text, language, score) else text

    systems: dict[str, dict[str, str]] = {name: {r["id"]: r["texts"][name] for r in rows} for name in SYSTEMS}
    chosen = {}
    for r in rows:
        scores = {name: module.word_f1(text, r["truth"]) for name, text in r["texts"].items()}
        floor = scores["current"][1] - RECALL_SLACK
        best = max((name for name in scores if scores[name][1] >= floor), key=lambda name: scores[name][0])
        chosen[r["id"]] = r["texts"][best]
    systems["page oracle"] = chosen
    for label, kinds in (("line oracle, article-typed", {"article"}), ("line oracle, every page", None)):
        systems[label] = {
            r["id"]: line_oracle(r["texts"]["current"], r["truth"], module.tokenize, keep)
            if kinds is None or r["kind"] in kinds
            else r["texts"]["current"]
            for r in rows
        }

    print(f"WCXB ({args.data}): {len(rows)} pages; P/R/F1 (F1 change against current)\n")
    groups = {"overall": rows, **{t: [r for r in rows if r["type"] == t] for t in TYPES}}
    print(f"{'system':<28}" + "".join(f"{name:>26}" for name in groups if groups[name]))
    base = {}
    for system, texts in systems.items():
        cells = []
        for name, group in groups.items():
            if not group:
                continue
            scores = [module.word_f1(texts[r["id"]], r["truth"]) for r in group]
            p, rec, f = (statistics.fmean(s[k] for s in scores) for k in range(3))
            base.setdefault(name, f)
            cells.append(f"{p:.3f}/{rec:.3f}/{f:.4f}{f - base[name]:+.4f}".rjust(26))
        print(f"{system:<28}" + "".join(cells))


if __name__ == "__main__":
    main()
