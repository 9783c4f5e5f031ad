"""The `webtext` command: each stage alone (Parquet in, Parquet out), a whole build, inspect, train, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from webtext.core.config import BuildConfig, ConfigError, TrainConfig, load_config
from webtext.core.stats import format_funnel


def _build_config(args) -> BuildConfig:
    return load_config(args.config) if args.config else BuildConfig()


STAGE_COMMANDS = ("harvest", "crawl", "extract", "dedup", "decontaminate", "shards")


def cmd_stage(args):
    """One stage alone: its section of `--config` (or the defaults), flags on top, inputs and --out."""
    from webtext import pipeline

    config = _build_config(args)
    if getattr(args, "allow_network", None):
        config.crawl = config.crawl.model_validate(
            {**config.crawl.model_dump(), "allowed_networks": config.crawl.allowed_networks + args.allow_network}
        )
    if getattr(args, "evalset", None):
        config.decontaminate.evalsets = list(args.evalset)
    if args.command == "decontaminate" and not config.decontaminate.evalsets:
        raise ConfigError("decontaminate needs at least one --evalset FILE (or decontaminate.evalsets in --config)")
    pipeline.init_ray(config.ray)
    return [pipeline.run_one(args.command, args.input, args.out, config, force=args.force)]


def cmd_build(args):
    from webtext import pipeline
    from webtext.core import storage

    config = load_config(args.config)
    funnel = pipeline.build(config)
    shards = storage.join(config.out_dir, "shards")
    if config.train is not None:
        from training.train import train

        config.train.shards = config.train.shards or shards
        train(config.train)
    print(f"\nshards in {shards}; look inside with: webtext inspect {shards}")
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

    def stage(name, inputs, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("input", metavar=inputs.upper(), nargs="+", help="files or folders: local paths or URIs (s3://...)")
        s.add_argument("--out", required=True, help="output folder: a local path or a URI")
        s.add_argument("--config", type=Path, help="build config YAML whose section for this stage is used")
        s.add_argument("--force", action="store_true", help="rerun even when the output's completion marker matches")
        s.set_defaults(func=cmd_stage)
        return s

    stage("harvest", "dumps", "Reddit dumps -> URLs folder")
    crawl = stage("crawl", "urls", "URLs (Parquet with a url column, or a .txt file of URLs) -> pages folder (Scrapy)")
    crawl.add_argument("--allow-network", action="append", metavar="CIDR",
                       help="let the crawler reach this non-public network, e.g. 127.0.0.0/8 (tests, demo)")
    stage("extract", "pages", "pages (url, html) -> documents (trafilatura + cleaning)")
    stage("dedup", "docs", "documents -> exact and near-duplicate free documents")
    decon = stage("decontaminate", "docs", "documents -> documents without eval-set overlap")
    decon.add_argument("--evalset", action="append", help="eval set file (.jsonl text field, or plain text)")
    stage("shards", "docs", "documents -> Parquet shards + manifest.json")

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


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        funnel = args.func(args)
    except (ConfigError, ValueError, OSError) as exc:  # bad input: config, files, columns, values
        print(f"webtext {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a stage that failed (StageError) or lost rows (AccountingError)
        print(f"webtext {args.command}: failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    if funnel and args.command != "build":
        print(format_funnel(funnel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
