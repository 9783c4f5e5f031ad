"""Shims for datatrove in benchmarks/dedup_endtoend.py: a whitespace tokenizer (its own needs spaCy
models, not installed here) and an xxhash64 that encodes str."""

import xxhash
from datatrove.utils.word_tokenizers import WordTokenizer


class SplitTokenizer(WordTokenizer):
    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def xxhash64(data: str | bytes) -> int:
    """datatrove 0.10's xxhash64 passes str, which xxhash 4 refuses: encode first."""
    return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
