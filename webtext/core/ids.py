"""Document ids: derived from the normalized URL, so every stage and every rerun agrees on them."""

from __future__ import annotations

import hashlib


def url_id(normalized_url: str) -> str:
    """Stable document id: the first 16 bytes of sha256 of the normalized URL, in hex."""
    return hashlib.sha256(normalized_url.encode()).hexdigest()[:32]
