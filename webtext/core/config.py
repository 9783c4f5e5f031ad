"""One typed configuration for every stage, loaded from YAML.

Defaults serve the offline demo on a laptop; anything that would be unsafe on the open web
(crawling private addresses) defaults to off and must be switched on explicitly.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from webtext.core.failures import KEEP_DROPPED, MAX_ERROR_FRACTION
from webtext.core.storage import is_uri


def _location(value: str, info: ValidationInfo) -> str:
    """A local path (relative ones resolve against the config file's folder) or a URI, kept as given."""
    if not value:
        raise ValueError("empty location")
    base = (info.context or {}).get("base")
    if is_uri(value) or base is None or Path(value).is_absolute():
        return value
    return str(Path(base) / value)


# Where data lives: a local path or a storage URI (s3://bucket/key, gs://..., file://...).
Location = Annotated[str, AfterValidator(_location)]


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class StageSection(Section):
    """What every stage's section has: its error budget and how many dropped rows it keeps to look at."""

    # rows dropped because code raised (`<stage>_error`, extraction_error, extraction_timeout), as a
    # share of the stage's input, past which the stage fails (measured: none on the demo or WCXB dev)
    max_error_fraction: float = Field(MAX_ERROR_FRACTION, ge=0, le=1)
    # examples of each drop reason in OUT/<stage>/_dropped/ (the same rows on every run); "all": every one
    keep_dropped: Annotated[int, Field(ge=0)] | Literal["all"] = KEEP_DROPPED


class RayConfig(Section):
    """How to reach Ray. `address: null` joins RAY_ADDRESS when set, else starts an embedded local Ray
    (as `address: local` always does)."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    object_store_memory_mb: int | None = Field(512, ge=64)


MEDIA_DOMAINS = [
    "imgur.com",
    "gfycat.com",
    "giphy.com",
    "redgifs.com",
    "flickr.com",
    "instagram.com",
    "youtube.com",
    "youtu.be",
    "vimeo.com",
    "dailymotion.com",
    "twitch.tv",
    "streamable.com",
    "soundcloud.com",
    "spotify.com",
    "tinypic.com",
    "photobucket.com",
    "imageshack.us",
]
REDDIT_DOMAINS = ["reddit.com", "redd.it", "redditmedia.com", "redditstatic.com"]
WIKIPEDIA_DOMAINS = ["wikipedia.org", "wikimedia.org", "wiktionary.org", "wikibooks.org"]
FILE_EXTENSIONS = [
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".gifv",
    ".webp",
    ".bmp",
    ".svg",
    ".tif",
    ".tiff",
    ".mp4",
    ".webm",
    ".mov",
    ".avi",
    ".mkv",
    ".flv",
    ".mp3",
    ".wav",
    ".ogg",
    ".flac",
    ".m4a",
    ".pdf",
    ".zip",
    ".rar",
    ".7z",
    ".gz",
    ".tar",
    ".exe",
    ".dmg",
    ".apk",
    ".iso",
    ".torrent",
    ".doc",
    ".docx",
    ".xls",
    ".xlsx",
    ".ppt",
    ".pptx",
]
TRACKING_PARAMS = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_name",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "yclid",
    "_ga",
    "ref_src",
]


class HarvestConfig(StageSection):
    """Which Reddit submissions contribute a URL (GPT-2 paper §2.1: outbound links with ≥ 3 karma)."""

    min_karma: int = 3
    # "submission": a URL qualifies when any one submission of it reached min_karma (the paper's reading,
    # and OpenWebText's); its provenance is those submissions, so the others are dropped as they are read.
    # "url_sum": when the scores of all its submissions add up to min_karma; all of them are its provenance.
    karma_rule: Literal["submission", "url_sum"] = "submission"
    drop_nsfw: bool = True
    start_utc: int | None = None  # inclusive, seconds since epoch
    end_utc: int | None = None  # exclusive
    blocked_subreddits: list[str] = []
    reddit_domains: list[str] = Field(default_factory=lambda: list(REDDIT_DOMAINS))
    media_domains: list[str] = Field(default_factory=lambda: list(MEDIA_DOMAINS))
    wikipedia_domains: list[str] = Field(default_factory=lambda: list(WIKIPEDIA_DOMAINS))
    blocked_domains: list[str] = []
    file_extensions: list[str] = Field(default_factory=lambda: list(FILE_EXTENSIONS))
    tracking_params: list[str] = Field(default_factory=lambda: list(TRACKING_PARAMS))
    # A dump that ends early, is empty or has a corrupt frame: "error" stops the build naming the file
    # and the offset reached; "warn" keeps what was read and counts the lost tail as `truncated_dump`.
    on_truncated: Literal["error", "warn"] = "error"
    # Hash buckets of the URL merge (one task each, bounded memory); null: from the dumps' total size.
    buckets: int | None = Field(default=None, ge=1, le=65536)
    # Plain NDJSON dumps larger than this are read by several tasks, one byte range each.
    split_bytes: int = Field(default=256 * 2**20, gt=0)


class CrawlConfig(StageSection):
    """Scrapy settings that matter for politeness, safety and throughput."""

    # Non-public networks the crawler may connect to, as CIDRs (e.g. ["127.0.0.0/8"] for tests and the
    # demo). Empty by default: loopback, private, link-local (cloud metadata) and reserved are refused.
    allowed_networks: list[str] = []
    obey_robots_txt: bool = True
    user_agent: str = "webtext-crawler/0.1 (+https://github.com/webtext/webtext)"
    concurrent_requests: int = Field(default=64, ge=1)
    concurrent_requests_per_domain: int = Field(default=8, ge=1)
    download_delay_s: float = Field(default=0.0, ge=0)
    # Scrapy's AutoThrottle adapts each domain's delay to its latency: on for the open web, off for
    # loopback demos and tests.
    autothrottle: bool = True
    timeout_s: float = Field(default=10.0, gt=0)  # a whole response
    connect_timeout_s: float = Field(default=5.0, gt=0)  # a TCP connection, within timeout_s
    robots_timeout_s: float = Field(default=5.0, gt=0)  # robots.txt; no answer in time: host_unreachable
    # A host that never answered is given up (its other URLs end as host_unreachable) after this many
    # failed connections in a row; one that has answered never is.
    host_failures: int = Field(default=3, ge=1)
    # Resolvers ("ip" or "ip:port") for host lookups; empty: the system's. One lookup per host per unit,
    # failures cached, each bounded by dns_timeout_s.
    dns_servers: list[str] = []
    dns_timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0)
    # 429/503 with Retry-After: waited for up to this many seconds, else the URL ends as http_error.
    retry_after_max_s: float = Field(default=60.0, ge=0)
    max_redirects: int = Field(default=5, ge=0)
    max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # At most this many URLs of one registered domain are fetched per run; the rest end as domain_cap.
    max_urls_per_domain: int | None = Field(default=None, ge=1)
    # Work units: URLs are hashed by registered domain into `buckets` (fewer for a small input), each cut into units of about
    # `unit_urls` URLs (whole domains); both are independent of the cluster size, so a rerun on any
    # cluster reuses the finished units.
    buckets: int = Field(default=1024, ge=1, le=65536)
    unit_urls: int = Field(default=1000, ge=1)
    # Units crawled at once by each worker process (one per CPU): a unit mostly waits on the network.
    units_per_cpu: int = Field(default=4, ge=1)
    # Fetched pages are checkpointed every `checkpoint_rows` pages or `checkpoint_s` seconds: a killed
    # unit refetches at most that many pages (plus those in flight) when it resumes.
    checkpoint_rows: int = Field(default=32, ge=1)
    checkpoint_s: float = Field(default=2.0, gt=0)

    @field_validator("dns_servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for server in value:
            host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
            try:
                ipaddress.ip_address(host)
                if server.count(":") == 1:
                    int(server.rsplit(":", 1)[1])
            except ValueError:
                raise ValueError(f"{server!r} is not a resolver address (ip or ip:port)") from None
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not a CIDR network (e.g. 127.0.0.0/8): {exc}") from None
        return value


class ExtractConfig(StageSection):
    """Extraction (trafilatura, resiliparse fallback) and the cleaning filters applied to its text.

    Defaults were chosen on the WCXB dev set with benchmarks/extraction_eval.py (BENCHMARKS.md).
    """

    favor_precision: bool = False
    favor_recall: bool = False
    include_tables: bool = True
    include_comments: bool = False
    fast: bool = True  # trafilatura without its own fallbacks (readability, jusText): resiliparse does better
    full_mode_below_chars: int = Field(300, ge=0)  # fast mode found less: rerun trafilatura in full mode
    full_mode_for_code: bool = True  # pages with a <pre> block (~8%) go straight to full mode
    fallback: bool = True  # resiliparse main-content text when trafilatura's is much shorter
    fallback_min_ratio: float = Field(1.5, ge=1.0)  # ... by this factor (characters)
    # ... keeping comment sections only where they are at least this share of its text (a forum thread)
    fallback_comments_share: float = Field(0.7, ge=0, le=1)
    full_metadata: bool = False  # trafilatura's metadata (+htmldate) instead of a few XPath lookups
    max_html_bytes: int = Field(8 * 2**20, gt=0)  # larger pages are dropped unparsed: html_too_large
    time_budget_s: float = Field(20.0, gt=0)  # a page that took longer is dropped: extraction_timeout
    max_replacement_ratio: float = Field(0.002, ge=0, le=1)  # U+FFFD per character: bad_encoding
    languages: list[str] = ["en"]
    min_language_score: float = Field(0.5, ge=0, le=1)  # wrong_language: another language, this sure
    language_sample_chars: int = Field(2000, ge=100)  # language ID reads this much sentence-like text
    min_words: int = Field(50, ge=0)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    max_symbol_ratio: float = Field(0.1, ge=0)  # '#' and '…' per word (Gopher)
    min_alpha_word_ratio: float = Field(0.3, ge=0, le=1)  # words with a letter (Gopher: 0.8 on raw words;
    # at 0.6 it dropped only ranking/score tables WCXB counts as main text, alpha 0.35-0.39)
    repeated_line_min_chars: int = Field(20, ge=1)  # later copies of lines this long are removed
    max_duplicate_line_chars: float = Field(0.3, ge=0, le=1)  # chars in repeated lines (Gopher: 0.2)
    max_duplicate_paragraph_chars: float = Field(0.2, ge=0, le=1)  # chars in repeated paragraphs (Gopher 0.2)
    boilerplate_phrases: list[str] = [
        "enable javascript",
        "javascript is disabled",
        "are you a robot",
        "verify you are human",
        "we use cookies",
        "accept all cookies",
        "access denied",
        "403 forbidden",
        "page not found",
    ]
    max_boilerplate_phrases: int = Field(1, ge=0)
    # Whole short lines of boilerplate removed (cleaning/boilerplate.py), on the page types named in
    # `line_rules_for` (told from the page's markup: og:type, schema.org types, <article> count)
    line_rules: list[Literal["share", "newsletter", "related", "photo_credit", "byline", "date", "cookie"]] = [
        "share",
        "newsletter",
        "related",
        "photo_credit",
        "byline",
        "date",
        "cookie",
    ]
    line_rules_for: list[Literal["article", "forum", "product", "listing", "other"]] = ["article"]


class DedupConfig(StageSection):
    """Exact (normalized-text hash) then near-duplicate (MinHash LSH) removal.

    `hash` is the 32-bit hash of a shingle: `poly64` (default) is computed in numpy over a whole
    batch, ~20x faster than a Python call per shingle; `xxh3` (xxh3_64 of the shingle's bytes,
    low 32 bits) and `sha1` (datasketch's default `sha1_hash32`) are per-shingle Python calls.
    `bands`/`rows` of 0 are tuned for recall at `threshold` (a pair at the threshold is a
    candidate with probability >= 0.99). `verify: jaccard` checks each candidate pair's exact
    Jaccard of shingle sets; `signature` its MinHash agreement (less scratch space, +-0.035 noise
    at 128 permutations, so pairs near the threshold go either way).
    """

    exact: bool = True
    near: bool = True
    shingle_words: int = Field(5, ge=1)
    num_perm: int = Field(128, ge=1, le=1024)
    threshold: float = Field(0.8, gt=0, le=1)
    seed: int = 1
    hash: Literal["poly64", "xxh3", "sha1"] = "poly64"
    bands: int = Field(0, ge=0)
    rows: int = Field(0, ge=0)
    buckets: int = Field(0, ge=0)  # hash buckets of the LSH shuffle; 0: from the input size
    max_pairs_per_doc: int = Field(32, ge=1)  # candidates checked per document within one band bucket
    verify: Literal["jaccard", "signature"] = "jaccard"

    @model_validator(mode="after")
    def _bands_fit(self):
        if (self.bands == 0) != (self.rows == 0):
            raise ValueError("dedup: set both bands and rows, or neither (tuned for the threshold)")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup: bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class DecontaminateConfig(StageSection):
    """Bloom filter of normalized eval-set n-grams (GPT-2 paper §4).

    `evalsets` entries are files (`.tokens` WikiText, PTB `.txt`, LAMBADA `.jsonl`, plain text) or
    `file.parquet:column` / `file.jsonl:field` for one column of a table.
    """

    evalsets: list[Location] = []
    ngram: int = Field(8, ge=1)
    false_positive_rate: float = Field(1e-8, gt=0, lt=1)
    min_matches: int = Field(8, ge=1)  # a document with this many eval n-grams is contaminated
    action: Literal["drop", "flag"] = "drop"


class ShardConfig(StageSection):
    """Final Parquet shards (sizes chosen by streaming-read measurements: see BENCHMARKS.md)."""

    max_rows_per_shard: int = Field(default=50_000, ge=1)  # hard limit on the rows of one file
    row_group_rows: int = Field(default=1_000, ge=1)  # the unit a streaming reader decodes at once
    compression: Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"] = "zstd"


class TrainConfig(Section):
    """GPT-2 training on the shards; the defaults are the demo's tiny CPU model.

    `shards` and `out_dir` are local paths or URIs (s3://...). `batch_size` is per rank and per micro-step:
    one optimizer step sees batch_size x grad_accum_steps x ranks sequences of block_size tokens.
    """

    shards: Path | str | None = None  # document shards (manifest or plain Parquet folder) or token shards
    out_dir: Path | str = Path("train")
    preset: Literal["tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"] = "tiny"
    block_size: int = Field(64, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum_steps: int = Field(1, ge=1)
    max_steps: int = Field(300, gt=0)
    learning_rate: float = Field(3e-3, gt=0)
    min_learning_rate: float = Field(3e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 1337
    device: str = "auto"
    compile: bool = False  # torch.compile the model (GPU runs; slow to start on CPU)
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes per rank
    checkpoint_every: int | None = Field(None, ge=1)  # default: max_steps // 10 (at least 1)
    val_fraction: float = Field(0.01, ge=0, lt=1)  # documents held out for validation, by id hash
    val_every: int | None = Field(None, ge=1)  # default: checkpoint_every
    val_batches: int = Field(8, ge=1)
    log_every: int = Field(25, ge=1)
    peak_tflops: float | None = Field(None, gt=0)  # for MFU; default: known GPUs' bf16 dense peak
    trace_data: bool = False  # write data-rank<R>.json: the data units each rank read, and a weights hash
    sample_tokens: int = Field(40, ge=0)
    sample_prompt: str = "The"

    @field_validator("shards", "out_dir", mode="before")
    @classmethod
    def _uri_or_path(cls, value):
        """URIs stay strings (Path would fold `s3://` into `s3:/`); the rest are paths resolved like any other."""
        return value if value is None or "://" in str(value) else Path(value)


class BuildConfig(Section):
    """A whole corpus build: dumps in, shards (and optionally a trained model) out."""

    dumps: list[Location] = []
    out_dir: Location = "webtext-out"
    ray: RayConfig = RayConfig()
    harvest: HarvestConfig = HarvestConfig()
    crawl: CrawlConfig = CrawlConfig()
    extract: ExtractConfig = ExtractConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    shards: ShardConfig = ShardConfig()
    train: TrainConfig | None = None


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the offending key."""


def validation_problems(exc: ValidationError, prefix: str = "") -> str:
    """`key.path: what is wrong` for each problem, on one line (pydantic's own text spans many)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in (prefix, *err['loc']) if p != '')}: {err['msg']}" for err in exc.errors()
    )


def load_config(path: Path | str, model: type[Section] = BuildConfig):
    """Load and validate a YAML config; relative paths in it resolve against the file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = model.model_validate(raw, context={"base": str(path.parent.resolve())})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from exc
    return _resolve_paths(config, path.parent.resolve())


def _resolve_paths(config: Section, base: Path):
    """Make every relative Path field absolute against `base` (the config file's folder)."""
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path) and not value.is_absolute():
            setattr(config, name, base / value)
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            setattr(config, name, [v if v.is_absolute() else base / v for v in value])
        elif isinstance(value, Section):
            _resolve_paths(value, base)
    return config
