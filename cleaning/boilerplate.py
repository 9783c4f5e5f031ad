"""Line-level boilerplate that survives extraction: share prompts, newsletter sign-ups, related-link
lines, photo credits, bylines, date lines and cookie-consent notices, and the trailing section
(related stories, author box, comments) that follows an article.

Each rule matches a whole line, never part of a sentence, so article prose is not cut; the lines each
rule removes are counted (the extract stage reports them, per rule, as outcomes). Rules were measured
on WCXB dev (benchmarks/extraction_eval.py prints each rule's precision gain and recall loss). A line
longer than `MAX_WORDS` words is prose and never matched, except by the rules in `ANY_LENGTH`.
"""

from __future__ import annotations

import re
from collections import Counter

MAX_WORDS = 12
MAX_PER_PAGE = 3
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rf"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?"
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}"
    r"|\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})"
    r"(?:,?\s+(?:at\s+)?\d{1,2}[:.]\d{2}(?:\s*[ap]\.?m\.?)?(?:\s+[a-z]{2,4})?)?"
)
_NAME = r"[A-Z][\w.'’-]*(?:\s+(?:[A-Z][\w.'’-]*|de|van|von|da|del|la|le|bin))*"
_SOCIAL = r"(?:facebook|twitter|x|linkedin|pinterest|whatsapp|reddit|email|e-mail|flipboard|threads|bluesky|telegram)"

RULES: dict[str, re.Pattern] = {
    "share": re.compile(
        rf"(?i)(?:share|share this(?: article| story| post| page)?|share on {_SOCIAL}|tweet(?: this)?|pin it"
        rf"|email this(?: article| story)?|print(?: this)?(?: article| story| page)?|copy link|{_SOCIAL})"
        r"(?:\s*[|•·/,]\s*" + _SOCIAL + r")*\s*[.:!]?"
    ),
    "newsletter": re.compile(
        r"(?i)(?:.*\b(?:sign up|signup|subscribe|join)\b.*\bnewsletters?\b.*|newsletters?(?: sign[- ]?up)?:?"
        r"|get (?:our|the) .*newsletter.*|.*\bdelivered (?:straight )?to your inbox\b.*)"
    ),
    "related": re.compile(
        r"(?i)(?:related|read more|read next|read also|also read|see also|more from|recommended|trending|popular)"
        r"(?: (?:articles?|stories|posts|content|reading|links|news|for you|now))?\s*(?::.*|[.!›»>]*)"
        r"|(?:you (?:may|might) also (?:like|enjoy)|more (?:stories|articles) (?:like this|from .*))[.:!]?"
    ),
    "photo_credit": re.compile(
        r"(?i)(?:(?:photo|image|picture|photograph|illustration|video)s?(?: credit| source| courtesy)?s?"
        r"(?: by| courtesy(?: of)?)?\s*[:/|©][^:]*|(?:credit|source|courtesy of):? .*(?:getty|shutterstock|reuters|afp"
        r"|\bap\b|istock|unsplash|alamy|photo|images?)\b.*|.*(?:/|\|| via) ?(?:getty images|shutterstock|reuters|afp"
        r"|ap photo|ap|istock(?:photo)?|unsplash|alamy)\)?\.?|©.*"
        r"|\([^()]*\b(?:photo|image|credit|getty|shutterstock)\b[^()]*\)\.?)"
    ),
    "byline": re.compile(
        rf"(?:(?i:by|written by|words by|posted by|author:?)\s+{_NAME}"
        rf"(?:\s*(?:,|and|&)\s*{_NAME})*(?:\s*[,|•·-]?\s*(?i:{_DATE}))?|(?i:about the author):?)"
    ),
    "date": re.compile(
        rf"(?i)(?:(?:published|updated|posted|last updated|modified|date)(?: on)?:?\s*)?{_DATE}"
        r"(?:\s*[|•·-]\s*\d+\s+min(?:ute)?s? read)?|\d+\s+min(?:ute)?s? read"
    ),
    # A site's notice about its own cookies: what it uses them for and what continuing to browse means.
    "cookie": re.compile(
        r"(?i).*(?:\b(?:we|this (?:web)?site|our (?:web)?site|site) uses? cookies\b"
        r"|\bcookies?\b.{0,200}\b(?:consent|continu(?:e|ing) (?:to )?(?:use|brows)|you agree|accept(?: all)?"
        r"|cookie (?:policy|settings|preferences|notice))|\b(?:accept|reject|manage) (?:all )?cookies\b).*"
    ),
}
# A cookie-consent notice is one long sentence whose wording is no article's: matched at any length.
ANY_LENGTH = {"cookie"}


# A heading that opens what follows an article rather than the article: related or recommended
# stories, the author box, comments, tags, sponsored links, a disclaimer.
TAIL_HEADING = re.compile(
    r"(?i)(?:related(?: (?:posts?|articles?|stories|content|reading|links|news|topics|guides))?"
    r"|you (?:may|might) (?:also )?(?:like|enjoy|be interested in)|(?:read|see|watch) (?:this )?next"
    r"|read (?:more|also)|more (?:from|in|on|by|stories|articles|news|posts|to read|to explore|like this)\b.*"
    r"|(?:latest|recent|popular|trending|top|featured) (?:news|posts|articles|stories|videos)"
    r"|most (?:read|popular|viewed|shared)|trending(?: now)?|recommended(?: for you| reading| articles| stories)?"
    r"|about (?:the )?authors?|follow us|leave a (?:reply|comment)|(?:\d+ )?comments?"
    r"|share this(?: article| post| story)?|tags|topics.*|sponsored(?: content| stories)?|disclaimer"
    r"|editor'?s picks|don'?t miss|up next|keep reading)[\s.:!…›»>]*"
)
TAIL_HEADING_WORDS = 8
TAIL_START = 0.5  # the heading comes after this share of the text's words
TAIL_MAX_PROSE = 0.7  # ... and at most this share of what follows it is in prose lines
PROSE_LINE_WORDS = 25


def cut_trailing_section(text: str, counts: Counter | None = None, code_lines: frozenset[str] = frozenset()) -> str:
    """`text` up to a trailing-section heading (`TAIL_HEADING`); `counts["tail"]` += lines removed.

    The heading must sit in the second half of the text and occur once: a "Read more" after every
    teaser of a list is a button, not a section. What follows must be mostly short lines (titles,
    teasers, names): a heading followed by prose (a disclaimer's paragraphs, a promo box in the middle
    of an article) is left alone, and a heading with nothing after it is left to the line rules.
    """
    lines = text.split("\n")
    total = sum(len(line.split()) for line in lines)
    seen = 0
    for i, line in enumerate(lines):
        words = len(line.split())
        if (
            seen >= TAIL_START * total
            and 0 < words <= TAIL_HEADING_WORDS
            and line not in code_lines
            and TAIL_HEADING.fullmatch(line.lstrip("#- ").strip())
            and lines.count(line) == 1
        ):
            tail = [len(rest.split()) for rest in lines[i + 1 :]]
            if sum(tail) and sum(n for n in tail if n >= PROSE_LINE_WORDS) <= TAIL_MAX_PROSE * sum(tail):
                if counts is not None:
                    counts["tail"] += sum(1 for rest in lines[i:] if rest)
                return "\n".join(lines[:i]).strip()
        seen += words
    return text


def remove_boilerplate_lines(
    text: str, rules: list[str], counts: Counter | None = None, code_lines: frozenset[str] = frozenset()
) -> str:
    """`text` without the short lines that one of `rules` matches in full; `counts[rule]` += lines removed.

    The page's own `code_lines` are never touched (a short `Image: …` line in a config sample), nor is
    a `key: value: …` line (`image: postgres:18` is not a photo credit). A rule that matches more than
    `MAX_PER_PAGE` lines of one page removes none there: sixty dates are a list of posts, not a dateline.
    """
    patterns = [(name, RULES[name]) for name in rules]
    lines = text.split("\n")
    matched: dict[int, str] = {}
    for i, line in enumerate(lines):
        if line and line not in code_lines:
            short = line.count(" ") < MAX_WORDS
            rule = next(
                (name for name, pattern in patterns if (short or name in ANY_LENGTH) and pattern.fullmatch(line)), None
            )
            if rule is not None:
                matched[i] = rule
    found = Counter(matched.values())
    drop = {i for i, rule in matched.items() if found[rule] <= MAX_PER_PAGE}
    if counts is not None:
        counts.update(rule for i, rule in matched.items() if i in drop)
    if not drop:
        return text
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line for i, line in enumerate(lines) if i not in drop)).strip()
