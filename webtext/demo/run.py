"""`webtext demo`: the whole pipeline offline, on a generated Reddit dump and a website on 127.0.0.1.

Everything lands in one folder: the dump, the config used (`build.yaml`), each stage's output, the
shards with their manifest, and the trained model.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from importlib import resources
from pathlib import Path

import yaml

from webtext import pipeline
from webtext.core.config import BuildConfig, CrawlConfig, DecontaminateConfig, HarvestConfig, RayConfig, TrainConfig
from webtext.demo.dump import BLOCKED_DOMAIN, write_dump
from webtext.demo.site import DemoSite

PLANTED_PASSAGES = 3  # eval-set paragraphs the generated site copies into its pages


def demo_config(out_dir: Path, evalset: Path, dump: Path, train_steps: int | None) -> BuildConfig:
    """The demo's build config: the defaults, plus loopback opened to the crawler and short timeouts."""
    train = TrainConfig(shards=out_dir / "shards", out_dir=out_dir / "train")
    if train_steps is not None:
        train.max_steps = train_steps
    return BuildConfig(
        dumps=[str(dump)],
        out_dir=str(out_dir),
        ray=RayConfig(num_cpus=2),
        crawl=CrawlConfig(allowed_networks=["127.0.0.0/8"], timeout_s=3.0, retries=1, autothrottle=False),
        harvest=HarvestConfig(blocked_domains=[BLOCKED_DOMAIN]),
        decontaminate=DecontaminateConfig(evalsets=[str(evalset)]),
        train=train,
    )


def demo_evalset(out_dir: Path) -> Path:
    """Copy the demo's small eval text (shipped in the package) next to the outputs."""
    target = out_dir / "evalset.txt"
    with resources.as_file(resources.files("webtext.demo") / "evalset.txt") as source:
        shutil.copyfile(source, target)
    return target


def paragraphs(path: Path) -> list[str]:
    return [p.strip() for p in path.read_text().split("\n\n") if p.strip()]


def run_demo(out_dir: Path | None = None, articles: int = 200, train_steps: int | None = None) -> BuildConfig:
    """Generate the data, build the corpus, train on it; `timings.json` keeps the wall time of each step."""
    from training.train import train

    start = time.perf_counter()
    timings: dict[str, float] = {}
    out_dir = Path(out_dir or f"webtext-demo-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    evalset = demo_evalset(out_dir)
    with DemoSite(
        seed=0, n_articles=articles, eval_passages=paragraphs(evalset)[:PLANTED_PASSAGES], slow_seconds=8.0
    ) as site:
        step = time.perf_counter()
        dump = out_dir / "dumps" / "RS_demo.zst"
        dump.parent.mkdir(exist_ok=True)
        planted = write_dump(dump, site.links(), seed=0)
        print(f"generated {dump} with {sum(planted.values())} submissions: {planted}", flush=True)
        config = demo_config(out_dir, evalset, dump, train_steps)
        (out_dir / "build.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        timings["generate dump"] = time.perf_counter() - step
        step = time.perf_counter()
        pipeline.init_ray(config.ray)
        timings["ray start"] = time.perf_counter() - step
        for stats in pipeline.build(config):
            timings[stats.stage] = stats.seconds
    print("\ntraining a tiny GPT-2 on the shards", flush=True)
    step = time.perf_counter()
    result = train(config.train)
    timings["train"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - start
    (out_dir / "timings.json").write_text(
        json.dumps(
            {"seconds": {k: round(v, 2) for k, v in timings.items()}, "train_tokens_per_s": round(result.tokens_per_s)},
            indent=2,
        )
    )
    print("\nwall time: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))
    print(f"everything is in {out_dir}")
    print(f"look inside with: webtext inspect {out_dir / 'shards'}")
    return config
