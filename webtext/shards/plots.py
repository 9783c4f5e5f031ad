"""`webtext inspect --plot DIR`: PNG charts of a shards folder (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: works on servers without a display

import matplotlib.pyplot as plt  # noqa: E402

from webtext.core import storage  # noqa: E402
from webtext.shards import summary  # noqa: E402


def _save(fig, location: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(location, buffer.getvalue())
    return location


def funnel_chart(funnel: list[dict], location: str) -> str:
    """What each stage received and kept (log scale: the funnel spans orders of magnitude)."""
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(funnel) + 1.5))
    labels = [f"{s['stage']} ({s['unit']})" for s in funnel][::-1]
    ax.barh(labels, [max(s["input"], 1) for s in funnel][::-1], color="#d0d7e1", label="in")
    ax.barh(labels, [max(s["output"], 1) for s in funnel][::-1], color="#3b6ea5", label="out")
    for i, s in enumerate(funnel[::-1]):
        ax.text(max(s["output"], 1), i, f" {s['output']:,}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=0.8)  # bars start at 1, not at the smallest count
    ax.set_title("funnel: in and out of each stage")
    ax.legend(loc="lower right")
    return _save(fig, location)


def length_chart(histogram: list[int], location: str) -> str:
    edges = summary.WORD_EDGES
    labels = [f"{edges[i]:,}" if i + 2 < len(edges) else f"{edges[i]:,}+" for i in range(len(histogram))]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(range(len(histogram)), histogram, color="#3b6ea5")
    ax.set_xticks(range(len(histogram)), labels, rotation=45, ha="right")
    ax.set_xlabel("words per document (bin lower edge)")
    ax.set_ylabel("documents")
    ax.set_title("document length")
    return _save(fig, location)


def top_chart(counts: dict[str, int], title: str, location: str, top: int) -> str:
    items = list(counts.items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(items) + 1.5))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#3b6ea5")
    ax.set_xlabel("documents")
    ax.set_title(title)
    return _save(fig, location)


def months_chart(months: dict[str, int], location: str) -> str:
    first, last = min(months), max(months)
    keys, (year, month) = [], map(int, first.split("-"))
    while f"{year:04d}-{month:02d}" <= last:  # every month in the range, empty ones too
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(range(len(keys)), [months.get(k, 0) for k in keys], color="#3b6ea5")
    step = max(1, len(keys) // 12)
    ax.set_xticks(range(0, len(keys), step), keys[::step], rotation=45, ha="right")
    ax.set_ylabel("documents")
    ax.set_title("documents per month of (first) Reddit submission")
    return _save(fig, location)


def write_plots(folder: str, manifest: dict, totals: dict, top: int = 20) -> list[str]:
    """The charts there is data for: funnel.png, lengths.png, domains.png, subreddits.png, months.png."""
    storage.makedirs(folder)
    written = []
    if manifest.get("funnel"):
        written.append(funnel_chart(manifest["funnel"], storage.join(folder, "funnel.png")))
    if sum(totals.get("words_histogram") or []):
        written.append(length_chart(totals["words_histogram"], storage.join(folder, "lengths.png")))
    if totals.get("domains"):
        written.append(top_chart(totals["domains"], f"top {top} domains", storage.join(folder, "domains.png"), top))
    if totals.get("subreddits"):
        written.append(
            top_chart(totals["subreddits"], f"top {top} subreddits", storage.join(folder, "subreddits.png"), top)
        )
    if totals.get("months"):
        written.append(months_chart(totals["months"], storage.join(folder, "months.png")))
    return written
