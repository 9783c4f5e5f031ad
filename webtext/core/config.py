"""One typed configuration for every stage, loaded from YAML.

Defaults serve the offline demo on a laptop; anything that would be unsafe on the open web
(crawling private addresses) defaults to off and must be switched on explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

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


class RayConfig(Section):
    """How to reach Ray. `address: null` joins RAY_ADDRESS when set, else starts an embedded local Ray."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    object_store_memory_mb: int | None = Field(512, ge=64)


MEDIA_DOMAINS = [
    "imgur.com", "gfycat.com", "giphy.com", "redgifs.com", "flickr.com", "instagram.com",
    "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "twitch.tv", "streamable.com",
    "soundcloud.com", "spotify.com", "tinypic.com", "photobucket.com", "imageshack.us",
]
REDDIT_DOMAINS = ["reddit.com", "redd.it", "redditmedia.com", "redditstatic.com"]
WIKIPEDIA_DOMAINS = ["wikipedia.org", "wikimedia.org", "wiktionary.org", "wikibooks.org"]
FILE_EXTENSIONS = [
    ".jpg", ".jpeg", ".png", ".gif", ".gifv", ".webp", ".bmp", ".svg", ".tif", ".tiff",
    ".mp4", ".webm", ".mov", ".avi", ".mkv", ".flv", ".mp3", ".wav", ".ogg", ".flac", ".m4a",
    ".pdf", ".zip", ".rar", ".7z", ".gz", ".tar", ".exe", ".dmg", ".apk", ".iso", ".torrent",
    ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx",
]
TRACKING_PARAMS = [
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_name",
    "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid", "_ga", "ref_src",
]


class HarvestConfig(Section):
    """Which Reddit submissions contribute a URL (GPT-2 paper §2.1: outbound links with ≥ 3 karma)."""

    min_karma: int = 3
    # "submission": a URL qualifies when any one submission of it reached min_karma (the paper's reading);
    # "url_sum": when the scores of all its submissions add up to min_karma.
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


class CrawlConfig(Section):
    """Scrapy settings that matter for politeness, safety and throughput."""

    # Non-public networks the crawler may connect to, as CIDRs (e.g. ["127.0.0.0/8"] for tests and the
    # demo). Empty by default: loopback, private, link-local (cloud metadata) and reserved are refused.
    allowed_networks: list[str] = []
    obey_robots_txt: bool = True
    user_agent: str = "webtext-crawler/0.1 (+https://github.com/webtext/webtext)"
    concurrent_requests: int = 64
    concurrent_requests_per_domain: int = 8
    download_delay_s: float = 0.0
    autothrottle: bool = False
    timeout_s: float = 10.0
    retries: int = 2
    max_redirects: int = 5
    max_bytes: int = 4 * 1024 * 1024
    partitions: int | None = None  # Ray tasks; default: 2 per CPU, at most one per registered domain


class ExtractConfig(Section):
    """Extraction (trafilatura) and the cleaning filters applied to its text."""

    favor_precision: bool = False
    favor_recall: bool = False
    include_tables: bool = True
    include_comments: bool = False
    languages: list[str] = ["en"]
    min_language_score: float = 0.5
    min_words: int = 50
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1  # '#' and '…' per word (Gopher)
    min_alpha_word_ratio: float = 0.7  # words with at least one letter (Gopher: 0.8 on raw words)
    max_duplicate_line_ratio: float = 0.3
    boilerplate_phrases: list[str] = [
        "enable javascript", "javascript is disabled", "are you a robot", "verify you are human",
        "we use cookies", "accept all cookies", "access denied", "403 forbidden", "page not found",
    ]
    max_boilerplate_phrases: int = 1


class DedupConfig(Section):
    """Exact (normalized-text hash) then near-duplicate (MinHash LSH) removal."""

    exact: bool = True
    near: bool = True
    shingle_words: int = 5
    num_perm: int = 128
    threshold: float = 0.8
    seed: int = 1


class DecontaminateConfig(Section):
    """Bloom filter of normalized eval-set n-grams (GPT-2 paper §4)."""

    evalsets: list[Path] = []
    ngram: int = 8
    false_positive_rate: float = 1e-8
    min_matches: int = 8  # a document with this many eval n-grams is contaminated
    action: Literal["drop", "flag"] = "drop"


class ShardConfig(Section):
    """Final Parquet shards (sizes chosen by streaming-read measurements: see BENCHMARKS.md)."""

    max_rows_per_shard: int = Field(default=10_000, ge=1)  # hard limit on the rows of one file
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
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
