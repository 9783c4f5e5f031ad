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


# The web's most used charsets, first to last: among detections that read the bytes about as well
# (charset_normalizer's chaos within CHAOS_MARGIN), the most used wins. Short Latin text otherwise
# comes out as mac_latin2 or cp1257 as often as cp1252. Supersets replace what servers call them.
WEB_CHARSETS = ["utf_8", "cp1252", "cp932", "gb18030", "euc_kr", "cp1251", "big5", "euc_jp", "cp1250", "cp1256"]
SUPERSETS = {"latin_1": "cp1252", "shift_jis": "cp932", "gbk": "gb18030", "gb2312": "gb18030"}
CHAOS_MARGIN = 0.1


def detect(body: bytes) -> str | None:
    matches = list(from_bytes(body))
    if not matches:
        return None
    least = min(m.chaos for m in matches)
    fitting = {
        SUPERSETS.get(name, name)
        for m in matches
        if m.chaos <= least + CHAOS_MARGIN
        for name in m.could_be_from_charset
    }
    return next((name for name in WEB_CHARSETS if name in fitting), matches[0].encoding)


def decode_html(body: bytes, content_type: str | None) -> str:
    """Decode with the charset from the BOM, the Content-Type header or <meta> (w3lib), repaired
    by detection when that charset does not fit the bytes."""
    _, text = html_to_unicode(content_type or "", body)
    expected = body.count(_LITERAL_FFFD)  # replacement characters the page really contains
    if text.count("\ufffd") <= expected:
        return text
    best = text
    candidates = [html_body_declared_encoding(body)]
    candidates.append(detect(body[: 256 * 1024]))  # a prefix: detection cost stays bounded
    for encoding in filter(None, candidates):
        decoded = _decode(body, encoding)
        if decoded is not None and decoded.count("\ufffd") < best.count("\ufffd"):
            best = decoded
            if best.count("\ufffd") <= expected:
                break
    return best
