"""The Ray pipeline driver: each stage reads Parquet, runs in parallel on Ray, writes Parquet + stats.

Stages declare their resources (a crawl partition owns a process; harvest tasks reserve the memory
of a 2**31 zstd window); the driver only composes them and keeps the funnel.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data import ActorPoolStrategy, SaveMode

from cleaning.extract import Extractor
from crawler.crawl import crawl_partition, partition_of
from crawler.harvest import CANDIDATE, dump_files, harvest_file, merge_candidates
from dedup.decontaminate import ContaminationCounter, build_filter, evalset_name, read_evalset
from dedup.minhash import Signer, find_duplicates
from webtext.config import (
    BuildConfig,
    CleanConfig,
    CrawlConfig,
    DecontaminateConfig,
    DedupConfig,
    HarvestConfig,
    RayConfig,
)
from webtext.schemas import URLS
from webtext.shards import write_shards
from webtext.stats import StageStats, format_funnel

log = logging.getLogger(__name__)

HARVEST_TASK_MEMORY = 2.5 * 2**30  # a .zst reader may hold a 2 GiB window


def init_ray(config: RayConfig) -> None:
    """Join the cluster named by the config or RAY_ADDRESS (under `ray job submit`), else start one here."""
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        quiet_ray_data()
        return
    memory = config.object_store_memory_mb * 2**20 if config.object_store_memory_mb else None
    ray.init(
        num_cpus=config.num_cpus,
        object_store_memory=memory,
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Ray Data logs every execution plan at INFO; the funnel says what matters."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _timed(stats: StageStats, start: float) -> StageStats:
    stats.seconds = time.perf_counter() - start
    stats.check()
    return stats


# -- harvest ---------------------------------------------------------------------------------------


@ray.remote(num_cpus=1, memory=HARVEST_TASK_MEMORY)
def _harvest_file(path: Path, config: HarvestConfig) -> tuple[pa.Table, StageStats]:
    return harvest_file(path, config)


def harvest(dumps: list[Path], out: Path, config: HarvestConfig) -> StageStats:
    """Dumps in, `out` (one Parquet file of URLs with provenance) out. One Ray task per dump file."""
    start = time.perf_counter()
    results = ray.get([_harvest_file.remote(path, config) for path in dump_files(dumps)])
    stats = StageStats("harvest", "submissions")
    for _, file_stats in results:
        stats.input += file_stats.input
        stats.dropped.update(file_stats.dropped)
    candidates = pa.concat_tables([table for table, _ in results]) if results else CANDIDATE.empty_table()
    urls = merge_candidates(candidates, config, stats)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(urls, out, compression="zstd")
    _timed(stats, start).write(out)
    return stats


# -- crawl -----------------------------------------------------------------------------------------


@ray.remote(num_cpus=1, max_calls=1)  # a fresh process per partition: Twisted's reactor cannot restart
def _crawl_partition(urls: pa.Table, config: CrawlConfig, part_path: Path) -> dict[str, int]:
    return crawl_partition(urls, config, part_path)


def crawl(urls_path: Path, out_dir: Path, config: CrawlConfig) -> StageStats:
    """URLs in, one pages row per URL out. Partitions hold whole registered domains; finished
    partitions (part file present) are skipped, so an interrupted crawl resumes where it stopped."""
    start = time.perf_counter()
    urls = read_table(urls_path, URLS.names)
    domains = pc.unique(urls.column("domain")).to_pylist()
    partitions = config.partitions or max(1, min(2 * cpus(), len(domains)))
    assignment = pa.array([partition_of(d or "", partitions) for d in urls.column("domain").to_pylist()])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = []
    for p in range(partitions):
        part_path = out_dir / f"part-{p:05d}-of-{partitions:05d}.parquet"
        part = urls.filter(pc.equal(assignment, p))
        if part.num_rows and not part_path.exists():
            pending.append(_crawl_partition.remote(part, config, part_path))
    ray.get(pending)
    statuses = pq.read_table(out_dir, columns=["status"]).column("status") if urls.num_rows else pa.chunked_array([], pa.string())
    stats = StageStats("crawl", "urls", input=urls.num_rows, output=len(statuses))
    stats.outcomes.update(dict(zip(*(c.to_pylist() for c in statuses.value_counts().flatten()))))
    if stats.output != stats.input:
        raise RuntimeError(f"crawl of {urls_path}: {stats.input} URLs in but {stats.output} pages rows out")
    _timed(stats, start).write(out_dir)
    return stats


# -- document stages on Ray Data --------------------------------------------------------------------


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or folder, with a clear error naming it when it is missing or unreadable."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise ValueError(f"{path}: cannot read Parquet input: {exc}") from exc


def read_dataset(path: Path, required: list[str]) -> ray.data.Dataset:
    """Ray dataset over a Parquet file or folder, after checking it has the columns a stage needs."""
    try:
        schema = pq.read_schema(next(iter(_parquet_files(path))))
    except (OSError, StopIteration, pa.ArrowInvalid) as exc:
        raise ValueError(f"{path}: no readable Parquet file: {exc}") from exc
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}")
    return ray.data.read_parquet(str(path))


def _parquet_files(path: Path):
    path = Path(path)
    return [path] if path.is_file() else sorted(path.rglob("*.parquet"))


def finish(annotated: ray.data.Dataset, out_dir: Path, stats: StageStats, start: float) -> StageStats:
    """Count `drop_reason`s, write the rows that have none to `out_dir`, store the stats beside them."""
    annotated = annotated.materialize()
    reasons: Counter = Counter()
    for batch in annotated.select_columns(["drop_reason"]).iter_batches(batch_format="pyarrow", batch_size=65536):
        values, counts = batch.column("drop_reason").value_counts().flatten()
        reasons.update({v: c for v, c in zip(values.to_pylist(), counts.to_pylist())})
    stats.input = sum(reasons.values())
    stats.output = reasons.pop(None, 0)
    stats.dropped.update(reasons)
    kept = annotated.map_batches(_kept_rows, batch_format="pyarrow")
    kept.write_parquet(str(out_dir), mode=SaveMode.OVERWRITE)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _timed(stats, start).write(out_dir)
    return stats


def _kept_rows(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch.column("drop_reason"))).drop_columns(["drop_reason"])


def extract(pages: Path, out_dir: Path, config: CleanConfig) -> StageStats:
    """Pages (url + html) in, cleaned documents out; actors keep trafilatura and the language model warm."""
    start = time.perf_counter()
    annotated = read_dataset(pages, ["url", "html"]).map_batches(
        Extractor,
        fn_constructor_args=(config,),
        batch_format="pyarrow",
        batch_size=32,
        compute=ActorPoolStrategy(min_size=1, max_size=cpus()),
        num_cpus=1,
    )
    return finish(annotated, out_dir, StageStats("extract", "pages"), start)


def _mark_duplicates(batch: pa.Table, duplicates: dict[str, tuple[str, str]]) -> pa.Table:
    survivors = {kept for _, kept in duplicates.values()}
    ids = batch.column("id").to_pylist()
    reason = [duplicates[i][0] if i in duplicates else None for i in ids]
    cluster = [duplicates[i][1] if i in duplicates else (i if i in survivors else None) for i in ids]
    batch = batch.drop_columns(["text_hash", "signature"])
    return batch.append_column("duplicate_cluster", pa.array(cluster, pa.string())).append_column(
        "drop_reason", pa.array(reason, pa.string())
    )


def dedup(docs: Path, out_dir: Path, config: DedupConfig) -> StageStats:
    """Documents in, one document per exact or near-duplicate cluster out."""
    start = time.perf_counter()
    signed = read_dataset(docs, ["id", "text"]).map_batches(
        Signer, fn_constructor_args=(config,), batch_format="pyarrow", batch_size=256,
        compute=ActorPoolStrategy(min_size=1, max_size=cpus()),
    ).materialize()
    key_columns = ["id", "karma", "created_utc", "text_hash", "signature"]
    keys = pa.concat_tables(ray.get(signed.select_columns(key_columns).to_arrow_refs()))
    duplicates = find_duplicates(keys, config)
    annotated = signed.map_batches(_mark_duplicates, fn_args=(duplicates,), batch_format="pyarrow")
    return finish(annotated, out_dir, StageStats("dedup", "documents"), start)


def _mark_contaminated(batch: pa.Table, config: DecontaminateConfig) -> pa.Table:
    contaminated = pc.greater_equal(batch.column("eval_ngram_matches"), config.min_matches)
    reason = pc.if_else(contaminated, "contaminated", pa.scalar(None, pa.string()))
    if config.action == "flag":
        reason = pa.nulls(batch.num_rows, pa.string())
    return batch.append_column("drop_reason", reason)


def decontaminate(docs: Path, out_dir: Path, config: DecontaminateConfig) -> StageStats:
    """Documents in; those sharing `min_matches` or more n-grams with an eval set dropped (or flagged)."""
    start = time.perf_counter()
    filters = {evalset_name(p): build_filter(read_evalset(p), config).save_bytes() for p in config.evalsets}
    counted = read_dataset(docs, ["id", "text"]).map_batches(
        ContaminationCounter, fn_constructor_args=(filters, config), batch_format="pyarrow", batch_size=256,
        compute=ActorPoolStrategy(min_size=1, max_size=cpus()),
    ).materialize()
    stats = StageStats("decontaminate", "documents")
    per_set = [f"matches_{name}" for name in filters]
    for batch in counted.select_columns(per_set).iter_batches(batch_format="pyarrow", batch_size=65536):
        for name, column in zip(filters, per_set):
            hits = pc.sum(pc.greater_equal(batch.column(column), config.min_matches).cast(pa.int64())).as_py()
            stats.outcomes[f"contaminated_by:{name}"] += hits or 0
    annotated = counted.drop_columns(per_set).map_batches(
        _mark_contaminated, fn_args=(config,), batch_format="pyarrow"
    )
    return finish(annotated, out_dir, stats, start)


# -- a whole build ----------------------------------------------------------------------------------


def build(config: BuildConfig) -> list[StageStats]:
    """Every stage in order, each writing its own folder under `out_dir`; returns the funnel."""
    init_ray(config.ray)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    funnel = [
        harvest(config.dumps, out / "urls.parquet", config.harvest),
        crawl(out / "urls.parquet", out / "pages", config.crawl),
        extract(out / "pages", out / "docs", config.clean),
        dedup(out / "docs", out / "deduped", config.dedup),
        decontaminate(out / "deduped", out / "clean", config.decontaminate),
    ]
    funnel.append(write_shards(out / "clean", out / "shards", config, funnel))
    print(format_funnel(funnel), flush=True)
    return funnel

