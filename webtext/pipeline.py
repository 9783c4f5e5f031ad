"""The driver: the stages in build order, each run by the one runner into its own folder.

Stage packages declare their stages (webtext.core.stage.Stage); this module only composes them:
`OUT/<stage>` for each, in order, each stage's input being the folder of the one before. A stage
whose completion marker matches its inputs and config is skipped, so a rerun after a crash or a
config change redoes only what changed.
"""

from __future__ import annotations

from pydantic import ValidationError

from cleaning.extract import EXTRACT
from crawler.crawl import CRAWL
from crawler.harvest import HARVEST
from dedup.decontaminate import DECONTAMINATE
from dedup.dedup import DEDUP
from dedup.overlap import OVERLAP
from webtext.core import runner, storage
from webtext.core.config import BuildConfig, DecontaminateConfig, RayConfig, validation_problems
from webtext.core.schemas import OVERLAP_TABLE
from webtext.core.stage import InputError, Stage
from webtext.core.stats import StageStats, format_funnel
from webtext.shards import SHARDS

STAGES: dict[str, Stage] = {s.name: s for s in (HARVEST, CRAWL, EXTRACT, DEDUP, DECONTAMINATE, SHARDS)}
OVERLAP_WORK = "_overlap"  # the OVERLAP stage's folder in the corpus folder, removed once the report is out


def init_ray(config: RayConfig) -> None:
    runner.init_ray(config.address, config.num_cpus, config.object_store_memory_mb)


def run_one(name: str, inputs: list[str], out: str, config: BuildConfig, force: bool = False) -> StageStats:
    """One stage with its section of `config`: what `webtext <stage> IN --out OUT` runs."""
    return runner.run_stage(
        STAGES[name],
        [str(i) for i in inputs],
        str(out),
        getattr(config, name),
        context={"build_config": config},
        force=force,
    )


def stage_dir(config: BuildConfig, name: str) -> str:
    return storage.join(config.out_dir, name)


def build(config: BuildConfig) -> list[StageStats]:
    """Every stage in order; returns the funnel."""
    init_ray(config.ray)
    funnel = []
    inputs = [str(d) for d in config.dumps]
    for name in STAGES:
        out = stage_dir(config, name)
        funnel.append(run_one(name, inputs, out, config))
        inputs = [out]
    print(format_funnel(funnel), flush=True)
    return funnel


def overlap(shards: str, evalsets: list[str], ngram: int = 8, false_positive_rate: float = 1e-8) -> dict:
    """`webtext overlap`: the share of each eval set's n-grams found in a folder of documents;
    written to SHARDS/overlap.json and returned. Needs Ray initialized (`init_ray`).

    The stage runs in SHARDS/_overlap: a run stopped in the scan resumes with the eval n-grams built."""
    shards = storage.normalize(shards)
    if not evalsets:
        raise InputError("overlap needs at least one --evalset")
    try:
        config = DecontaminateConfig(evalsets=evalsets, ngram=ngram, false_positive_rate=false_positive_rate)
    except ValidationError as exc:
        raise InputError(f"overlap: {validation_problems(exc)}") from None
    work = storage.join(shards, OVERLAP_WORK)
    runner.run_stage(OVERLAP, [shards], work, config)
    report = storage.read_json(storage.join(work, OVERLAP_TABLE))
    storage.write_json(storage.join(shards, OVERLAP_TABLE), report)
    storage.delete(work)
    return report
