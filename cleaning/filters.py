"""Text repair and the document filters a pretraining corpus needs (C4/Gopher-style heuristics).

Each filter returns a drop reason or None; the first reason that applies is the one counted.
"""

from __future__ import annotations

import re
from functools import cached_property

import ftfy
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from webtext.config import CleanConfig

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Repair mojibake (ftfy), collapse runs of spaces, strip lines, keep at most one blank line."""
    text = ftfy.fix_text(text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class DocumentFilter:
    """Language identification plus quality rules; each rule is a setting in CleanConfig."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self.phrases = [p.lower() for p in config.boilerplate_phrases]

    @cached_property
    def identifier(self) -> LanguageIdentifier:
        # py3langid ships its model inside the package: nothing is downloaded at run time.
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def language(self, text: str) -> tuple[str, float]:
        lang, score = self.identifier.classify(text[:5000])
        return lang, float(score)

    def reason(self, text: str, lang: str, lang_score: float) -> str | None:
        """Why `text` should not be in the corpus, or None when it passes every rule."""
        c = self.config
        if c.languages and (lang not in c.languages or lang_score < c.min_language_score):
            return "wrong_language"
        words = text.split()
        if len(words) < c.min_words:
            return "too_short"
        mean_length = sum(map(len, words)) / len(words)
        if not c.min_mean_word_length <= mean_length <= c.max_mean_word_length:
            return "mean_word_length"
        if (text.count("#") + text.count("...") + text.count("…")) / len(words) > c.max_symbol_ratio:
            return "symbol_ratio"
        if sum(any(ch.isalpha() for ch in w) for w in words) / len(words) < c.min_alpha_word_ratio:
            return "alpha_ratio"
        lines = [line for line in text.splitlines() if line]
        if lines and 1 - len(set(lines)) / len(lines) > c.max_duplicate_line_ratio:
            return "repeated_lines"
        lowered = text.lower()
        if sum(p in lowered for p in self.phrases) > c.max_boilerplate_phrases:
            return "boilerplate"
        return None
