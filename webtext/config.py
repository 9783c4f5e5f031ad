"""One typed configuration for every stage, loaded from YAML.

Defaults serve the offline demo on a laptop; anything that would be unsafe on the open web
(crawling private addresses) defaults to off and must be switched on explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class RayConfig(Section):
    """How to reach Ray. `address: null` joins RAY_ADDRESS when set, else starts an embedded local Ray."""

    address: str | None = None
    num_cpus: int | None = None
    object_store_memory_mb: int | None = 512


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


class CleanConfig(Section):
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
    """Final Parquet shards."""

    max_rows_per_shard: int = 10_000
    row_group_rows: int = 1_000
    compression: str = "zstd"


class TrainConfig(Section):
    """GPT-2 training on the shards; the defaults are the demo's tiny CPU model."""

    shards: Path | None = None  # folder of document shards; `webtext build` fills it in
    out_dir: Path = Path("train")
    preset: Literal["tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"] = "tiny"
    block_size: int = 64
    batch_size: int = 16
    max_steps: int = 300
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    shuffle_buffer: int = 256
    seed: int = 1337
    device: str = "auto"
    log_every: int = 25
    sample_tokens: int = 40
    sample_prompt: str = "The"


class BuildConfig(Section):
    """A whole corpus build: dumps in, shards (and optionally a trained model) out."""

    dumps: list[Path] = []
    out_dir: Path = Path("webtext-out")
    ray: RayConfig = RayConfig()
    harvest: HarvestConfig = HarvestConfig()
    crawl: CrawlConfig = CrawlConfig()
    clean: CleanConfig = CleanConfig()
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
        config = model.model_validate(raw)
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
