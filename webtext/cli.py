"""The `webtext` command: each stage alone (Parquet in, Parquet out), a whole build, inspect, train, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from webtext.config import BuildConfig, ConfigError, TrainConfig, load_config
from webtext.stats import format_funnel


def _build_config(args) -> BuildConfig:
    return load_config(args.config) if args.config else BuildConfig()


# each stage command, and the section of the build config it takes
STAGE_SECTIONS = {"harvest": "harvest", "crawl": "crawl", "extract": "clean", "dedup": "dedup", "decontaminate": "decontaminate"}


def cmd_stage(args):
    """One stage alone: its section of `--config` (or the defaults), flags on top, Parquet in and out."""
    from webtext import pipeline

    config = _build_config(args)
    config.crawl.allowed_networks += getattr(args, "allow_network", None) or []
    if getattr(args, "evalset", None):
        config.decontaminate.evalsets = [Path(p) for p in args.evalset]
    if args.command == "decontaminate" and not config.decontaminate.evalsets:
        raise ConfigError("decontaminate needs at least one --evalset FILE (or decontaminate.evalsets in --config)")
    pipeline.init_ray(config.ray)
    run = getattr(pipeline, args.command)
    return [run(args.input, args.out, getattr(config, STAGE_SECTIONS[args.command]))]


def cmd_build(args):
    from webtext import pipeline

    config = load_config(args.config)
    funnel = pipeline.build(config)
    if config.train is not None:
        from training.train import train

        config.train.shards = config.train.shards or Path(config.out_dir) / "shards"
        train(config.train)
    print(f"\nshards in {Path(config.out_dir) / 'shards'}; look inside with: webtext inspect {Path(config.out_dir) / 'shards'}")
    return funnel


def cmd_train(args):
    from training.train import train

    config = load_config(args.config, TrainConfig)
    if args.shards:
        config.shards = Path(args.shards)
    if config.shards is None:
        raise ConfigError(f"{args.config}: set `shards:` (a folder of document shards) or pass --shards")
    train(config)


def cmd_inspect(args):
    from webtext.inspect import inspect_shards

    inspect_shards(Path(args.shards), samples=args.samples)


def cmd_demo(args):
    from webtext.demo.run import run_demo

    run_demo(out_dir=Path(args.out) if args.out else None, articles=args.articles, train_steps=args.steps)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webtext", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name, inputs, help_text, nargs=None):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("input", metavar=inputs.upper(), nargs=nargs, type=Path)
        s.add_argument("--out", required=True, type=Path)
        s.add_argument("--config", type=Path, help="build config YAML whose section for this stage is used")
        s.set_defaults(func=cmd_stage)
        return s

    stage("harvest", "dumps", "Reddit dumps -> URLs Parquet", nargs="+")
    crawl = stage("crawl", "urls", "URLs Parquet -> pages Parquet folder (Scrapy)")
    crawl.add_argument("--allow-network", action="append", metavar="CIDR",
                       help="let the crawler reach this non-public network, e.g. 127.0.0.0/8 (tests, demo)")
    stage("extract", "pages", "pages (url, html) -> documents (trafilatura + cleaning)")
    stage("dedup", "docs", "documents -> exact and near-duplicate free documents")
    decon = stage("decontaminate", "docs", "documents -> documents without eval-set overlap")
    decon.add_argument("--evalset", action="append", help="eval set file (.jsonl text field, or plain text)")

    b = sub.add_parser("build", help="every stage from a build config")
    b.add_argument("config", type=Path)
    b.set_defaults(func=cmd_build)
    t = sub.add_parser("train", help="train GPT-2 on document shards")
    t.add_argument("config", type=Path)
    t.add_argument("--shards", type=Path)
    t.set_defaults(func=cmd_train)
    i = sub.add_parser("inspect", help="summarize a shards folder")
    i.add_argument("shards", type=Path)
    i.add_argument("--samples", type=int, default=2)
    i.set_defaults(func=cmd_inspect)
    d = sub.add_parser("demo", help="the whole pipeline offline on generated data, then a tiny GPT-2")
    d.add_argument("--out", help="output folder (default: a new webtext-demo-* folder here)")
    d.add_argument("--articles", type=int, default=200)
    d.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        funnel = args.func(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"webtext {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if funnel and args.command != "build":
        print(format_funnel(funnel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
