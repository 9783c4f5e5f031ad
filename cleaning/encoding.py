"""HTML bytes to text, repairing pages whose declared charset is wrong.

Servers often label cp1252, Shift-JIS or GBK pages `charset=utf-8`; decoding as declared then fills
the text with U+FFFD. When the declared (or default) charset yields more replacement characters than
the bytes themselves contain, the <meta> charset and then charset_normalizer's detection are tried,
and the decoding with the fewest replacement characters wins. What stays unreadable is counted by
the caller as `bad_encoding`.
"""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes
from w3lib.encoding import html_body_declared_encoding, html_to_unicode

_LITERAL_FFFD = "\ufffd".encode()


def _decode(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(codecs.lookup(encoding).name, errors="replace")
    except LookupError:
        return None


def decode_html(body: bytes, content_type: str | None) -> str:
    """Decode with the charset from the BOM, the Content-Type header or <meta> (w3lib), repaired
    by detection when that charset does not fit the bytes."""
    _, text = html_to_unicode(content_type or "", body)
    expected = body.count(_LITERAL_FFFD)  # replacement characters the page really contains
    if text.count("\ufffd") <= expected:
        return text
    best = text
    candidates = [html_body_declared_encoding(body)]
    match = from_bytes(body[: 256 * 1024]).best()  # a prefix: detection cost stays bounded
    candidates.append(match.encoding if match is not None else None)
    for encoding in filter(None, candidates):
        decoded = _decode(body, encoding)
        if decoded is not None and decoded.count("\ufffd") < best.count("\ufffd"):
            best = decoded
            if best.count("\ufffd") <= expected:
                break
    return best
