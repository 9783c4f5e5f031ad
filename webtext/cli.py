"""The `webtext` command: each stage alone (Parquet in, Parquet out), a whole build, inspect, train, demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from pydantic import ValidationError

from webtext.core.config import BuildConfig, ConfigError, TrainConfig, load_config, validation_problems
from webtext.core.stats import format_funnel


def _build_config(args) -> BuildConfig:
    return load_config(args.config) if args.config else BuildConfig()


STAGE_COMMANDS = ("harvest", "crawl", "extract", "dedup", "decontaminate", "shards")


def cmd_stage(args):
    """One stage alone: its section of `--config` (or the defaults), flags on top, inputs and --out."""
    from webtext import pipeline

    config = _build_config(args)
    if getattr(args, "allow_network", None):
        try:
            config.crawl = config.crawl.model_validate(
                {**config.crawl.model_dump(), "allowed_networks": config.crawl.allowed_networks + args.allow_network}
            )
        except ValidationError as exc:
            raise ConfigError(f"--allow-network: {validation_problems(exc)}") from None
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
        config.shards = args.shards if "://" in args.shards else Path(args.shards)
    if config.shards is None:
        raise ConfigError(f"{args.config}: set `shards:` (a folder of document shards) or pass --shards")
    if args.ray_workers:
        from training.ray_train import train_on_ray

        train_on_ray(config, args.ray_workers, use_gpu=args.gpu)
    else:
        train(config)


def cmd_tokenize(args):
    from training.tokens import tokenize_shards

    tokenize_shards(args.shards, args.out, workers=args.workers, use_ray=args.ray)


def cmd_eval(args):
    from training.eval import evaluate

    if not (args.wikitext or args.ptb or args.lambada):
        raise ConfigError("eval needs at least one of --wikitext FILE, --ptb FILE, --lambada FILE")
    evaluate(
        args.checkpoint,
        wikitext=args.wikitext,
        ptb=args.ptb,
        lambada=args.lambada,
        stride=args.stride,
        device=args.device,
        limit=args.limit,
    )


def cmd_export_hf(args):
    from training.hf import export_hf

    export_hf(args.checkpoint, args.out)
    print(f"{args.out}: config.json + model.safetensors (GPT2LMHeadModel)")


def cmd_import_hf(args):
    from training.hf import import_hf

    import_hf(args.model, args.out)
    print(f"{args.out}: webtext checkpoint (use it with `webtext eval`, or as ckpt.pt in a run's out_dir)")


def cmd_inspect(args):
    from webtext.core.stage import InputError
    from webtext.shards.inspect import find, inspect_shards, show_document, show_dropped

    if args.dropped is not None:
        show_dropped(args.shards, args.dropped, args.n)
        return None
    if args.id is None and args.url is None:
        inspect_shards(args.shards, samples=args.samples, top=args.top, plot=args.plot)
        return None
    rows = find(args.shards, id=args.id, url=args.url)
    if not rows:
        raise InputError(
            f"{args.shards}: no document with {'id ' + args.id if args.id is not None else 'url ' + args.url}"
        )
    for row in rows:
        show_document(row)


def cmd_validate(args):
    from webtext.core.stage import StageError
    from webtext.shards.validate import validate

    problems = validate(args.shards)
    for line in problems:
        print(line)
    if problems:
        raise StageError(f"{len(problems)} problem(s) in {args.shards}")
    print(f"{args.shards}: OK (manifest, checksums, schema, row counts, ids)")


def cmd_demo(args):
    from webtext.demo.run import run_demo

    run_demo(out_dir=Path(args.out) if args.out else None, articles=args.articles, train_steps=args.steps)


def cmd_overlap(args):
    from dedup.overlap import format_table
    from webtext import pipeline

    pipeline.init_ray(_build_config(args).ray)
    print(format_table(pipeline.overlap(args.shards, args.evalset, args.ngram), args.ngram))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webtext", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name, inputs, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument(
            "input", metavar=inputs.upper(), nargs="+", help="files or folders: local paths or URIs (s3://...)"
        )
        s.add_argument("--out", required=True, help="output folder: a local path or a URI")
        s.add_argument("--config", type=Path, help="build config YAML whose section for this stage is used")
        s.add_argument("--force", action="store_true", help="rerun even when the output's completion marker matches")
        s.set_defaults(func=cmd_stage)
        return s

    stage("harvest", "dumps", "Reddit dumps -> URLs folder")
    crawl = stage("crawl", "urls", "URLs (Parquet with a url column, or a .txt file of URLs) -> pages folder (Scrapy)")
    crawl.add_argument(
        "--allow-network",
        action="append",
        metavar="CIDR",
        help="let the crawler reach this non-public network, e.g. 127.0.0.0/8 (tests, demo)",
    )
    stage("extract", "pages", "pages (url, html) -> documents (trafilatura + cleaning)")
    stage("dedup", "docs", "documents -> exact and near-duplicate free documents")
    decon = stage("decontaminate", "docs", "documents -> documents without eval-set overlap")
    decon.add_argument("--evalset", action="append", help="eval set file (.jsonl text field, or plain text)")
    stage("shards", "docs", "documents -> Parquet shards + manifest.json")
    ov = sub.add_parser(
        "overlap", help="share of each eval set's 8-grams found in a corpus (GPT-2 Table 6) -> SHARDS/overlap.json"
    )
    ov.add_argument("shards", help="folder of documents (shards or any stage's output): a local path or a URI")
    ov.add_argument(
        "--evalset",
        action="append",
        required=True,
        help="eval set file (.tokens, ptb.*, .jsonl, text; FILE.parquet:column)",
    )
    ov.add_argument("--ngram", type=int, default=8)
    ov.add_argument("--config", type=Path, help="build config YAML (for its ray: section)")
    ov.set_defaults(func=cmd_overlap)

    b = sub.add_parser("build", help="every stage from a build config")
    b.add_argument("config", type=Path)
    b.set_defaults(func=cmd_build)
    t = sub.add_parser("train", help="train GPT-2 on document shards")
    t.add_argument("config", type=Path)
    t.add_argument("--shards", help="shards folder (local path or URI); overrides the config's")
    t.add_argument("--ray-workers", type=int, help="train with Ray Train on this many workers (multi-node)")
    t.add_argument("--gpu", action="store_true", help="with --ray-workers: one GPU per worker")
    t.set_defaults(func=cmd_train)
    tok = sub.add_parser("tokenize", help="document shards -> uint16 token shards with an index (fast training input)")
    tok.add_argument("shards", help="document shards folder (local path or URI)")
    tok.add_argument("--out", required=True, help="token shards folder (local path or URI)")
    tok.add_argument("--workers", type=int, help="local processes (default: CPU count)")
    tok.add_argument("--ray", action="store_true", help="one Ray task per shard (joins RAY_ADDRESS when set)")
    tok.set_defaults(func=cmd_tokenize)
    ev = sub.add_parser("eval", help="zero-shot perplexity (WikiText, PTB) and LAMBADA accuracy of a checkpoint")
    ev.add_argument("checkpoint", help="ckpt.pt, or a Hugging Face GPT-2 folder")
    ev.add_argument("--wikitext", help="WikiText-2/-103 *.tokens file")
    ev.add_argument("--ptb", help="PTB text file (ptb.test.txt)")
    ev.add_argument("--lambada", help="LAMBADA jsonl (a `text` field per line)")
    ev.add_argument("--stride", type=int, help="sliding-window stride in tokens (default: half the block size)")
    ev.add_argument("--limit", type=int, help="LAMBADA: only the first N examples")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=cmd_eval)
    ex = sub.add_parser(
        "export-hf", help="checkpoint -> Hugging Face GPT2LMHeadModel folder (config.json + model.safetensors)"
    )
    ex.add_argument("checkpoint")
    ex.add_argument("--out", required=True)
    ex.set_defaults(func=cmd_export_hf)
    im = sub.add_parser("import-hf", help="Hugging Face GPT-2 folder -> webtext checkpoint")
    im.add_argument("model", help="folder with config.json and model.safetensors")
    im.add_argument("--out", required=True, help="checkpoint file to write (e.g. run/ckpt.pt)")
    im.set_defaults(func=cmd_import_hf)
    i = sub.add_parser(
        "inspect", help="summarize a shards folder, show one document with its provenance, or a stage's dropped rows"
    )
    i.add_argument("shards", help="shards folder: a local path or a URI")
    i.add_argument("--samples", type=int, default=2)
    i.add_argument("--top", type=int, default=10, help="domains and subreddits listed")
    i.add_argument("--id", help="show the document with this id")
    i.add_argument("--url", help="show the document(s) with this url or final_url")
    i.add_argument(
        "--dropped",
        nargs="?",
        const="",
        metavar="REASON",
        help="a stage's folder (OUT/<stage>): examples of rows dropped as REASON (no REASON: the reasons)",
    )
    i.add_argument("-n", type=int, default=5, help="with --dropped: how many examples")
    i.add_argument(
        "--plot", metavar="DIR", help="write PNG charts (funnel, lengths, domains, subreddits, months) there"
    )
    i.set_defaults(func=cmd_inspect)
    v = sub.add_parser(
        "validate", help="check a shards folder: checksums, schema, row counts, duplicate ids (exit 1 on problems)"
    )
    v.add_argument("shards", help="shards folder: a local path or a URI")
    v.set_defaults(func=cmd_validate)
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
    """Exit 2 for bad input or config (one line); 1 for storage still failing after retries, a stage
    that failed (error budget, lost rows) and bugs, whose traceback is printed with -v and under
    `ray job submit` (the job's log), and is in the stage's `_errors.log`."""
    from webtext.core.failures import BugError
    from webtext.core.stage import InputError, StageError

    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    show_traceback = args.verbose or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    prefix = f"webtext {args.command}"
    try:
        funnel = args.func(args)
    except (ConfigError, InputError) as exc:  # bad input: config, files, columns, values
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the storage layer retried transient failures; this one persisted
        print(f"{prefix}: storage failure: {_one_line(exc)}", file=sys.stderr)
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        return 1
    except BugError as exc:
        print(f"{prefix}: bug: {_one_line(exc)}", file=sys.stderr)
        if show_traceback:
            print(exc.details, file=sys.stderr)
        return 1
    except StageError as exc:  # a stage over its error budget or that lost rows
        print(f"{prefix}: failed: {_one_line(exc)}", file=sys.stderr)
        if show_traceback and getattr(exc, "details", ""):
            print(exc.details, file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - outside any stage (training, inspect): still a bug, said so
        print(
            f"{prefix}: bug: {type(exc).__name__}: {_one_line(exc)}{'' if show_traceback else ' (rerun with -v for the traceback)'}",
            file=sys.stderr,
        )
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        return 1
    if funnel and args.command != "build":
        print(format_funnel(funnel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
