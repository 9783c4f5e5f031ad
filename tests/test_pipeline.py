"""The whole pipeline: a reduced demo in-process, and `webtext build` submitted to a Ray cluster."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from webtext.core.manifest import read_manifest
from webtext.core.runner import MARKER
from webtext.demo.dump import write_dump
from webtext.demo.run import demo_evalset, paragraphs, run_demo
from webtext.demo.site import DemoSite
from webtext.pipeline import STAGES, build, stage_dir

BIN = Path(sys.executable).parent

PLANTED_REASONS = {
    "harvest": {
        "blocked_domain",
        "media_domain",
        "low_karma",
        "self_post",
        "wikipedia",
        "nsfw",
        "reddit_link",
        "malformed",
    },
    "extract": {"not_html", "http_error", "wrong_language", "too_short"},
    "dedup": {"exact_duplicate", "near_duplicate"},
    "decontaminate": {"contaminated"},
}


def test_reduced_demo_drops_every_planted_reason_and_trains(tmp_path, local_ray, capsys):
    config = run_demo(out_dir=tmp_path / "demo", articles=24, train_steps=30)
    out = capsys.readouterr().out
    manifest = read_manifest(str(Path(config.out_dir) / "shards"))
    funnel = {stage["stage"]: stage for stage in manifest["funnel"]}
    for stage, reasons in PLANTED_REASONS.items():
        stats = funnel[stage]
        assert {r for r in reasons if stats["dropped"].get(r, 0) > 0} == reasons, (stage, stats["dropped"])
        assert stats["input"] == stats["output"] + sum(stats["dropped"].values())
    assert funnel["crawl"]["input"] == funnel["crawl"]["output"] == funnel["extract"]["input"]
    table = pq.read_table(Path(config.out_dir) / "shards" / "data")  # plain pyarrow opens the folder
    assert table.num_rows == manifest["documents"] > 10
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    for entry in manifest["shards"]:
        assert (
            hashlib.sha256((Path(config.out_dir) / "shards" / entry["file"]).read_bytes()).hexdigest()
            == entry["sha256"]
        )
    assert "loss" in out and (Path(config.out_dir) / "train" / "ckpt.pt").exists()
    assert "webtext inspect" in out

    # Every planted drop has examples to look at, a planted demo page among them (the harvest's and
    # the crawl's drops have none yet: their code, in crawler/, does not hand drops to the sampler).
    from webtext.cli import main

    card = (Path(config.out_dir) / "shards" / "README.md").read_text()
    for stage, reasons in PLANTED_REASONS.items():
        if stage == "harvest":
            continue
        for reason in reasons:
            assert main(["inspect", stage_dir(config, stage), "--dropped", reason, "-n", "1"]) == 0
            shown = capsys.readouterr().out
            assert f"example(s) of {reason}, showing 1" in shown and "url: http://127.0.0.1:" in shown, shown
            assert f"[examples](../{stage}/_dropped/{reason}.parquet)" in card

    # A rerun with dedup.threshold changed redoes dedup and what follows it, nothing before it.
    markers = {name: Path(stage_dir(config, name), MARKER) for name in STAGES}
    before = {name: path.stat().st_mtime_ns for name, path in markers.items()}
    config.dedup = config.dedup.model_copy(update={"threshold": 0.6})
    rerun = {stats.stage: stats for stats in build(config)}
    after = {name: path.stat().st_mtime_ns for name, path in markers.items()}
    assert [name for name in STAGES if after[name] != before[name]] == ["dedup", "decontaminate", "shards"]
    assert rerun["extract"].to_dict() == funnel["extract"] | {"seconds": rerun["extract"].to_dict()["seconds"]}


@pytest.fixture
def ray_cluster():
    """A `ray start --head --block` cluster on 127.0.0.1 with its own ports, ready for jobs.

    Stopped by signalling its own `ray start` process: `ray stop` would also kill
    the embedded Ray that other tests in this session share.
    """

    def free_ports(n):
        """Distinct free ports: all sockets stay bound until every port is chosen."""
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return [s.getsockname()[1] for s in sockets]

    port, dashboard, *agent_ports = free_ports(7)
    address = f"http://127.0.0.1:{dashboard}"
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Unix socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    start = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        # Agents default to fixed ports, which the session's embedded Ray already holds.
        *(
            f"--{name}={p}"
            for name, p in zip(
                (
                    "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port",
                    "metrics-export-port",
                    "runtime-env-agent-port",
                    "ray-client-server-port",
                ),
                agent_ports,
            )
        ),
    ]
    head = subprocess.Popen(start, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The job agent comes up some seconds after the head: wait until a trivial job runs.
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, head.stdout.read()
            probe = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--", "true"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, probe.stdout[-2000:] + probe.stderr[-2000:]
            time.sleep(2)
        yield address, env
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_build_submitted_as_ray_job(tmp_path, ray_cluster):
    address, env = ray_cluster
    evalset = demo_evalset(tmp_path)
    with DemoSite(seed=1, n_articles=12, eval_passages=paragraphs(evalset)[:1], slow_seconds=5.0) as site:
        write_dump(tmp_path / "RS_job.zst", site.links(), seed=1)
        (tmp_path / "build.yaml").write_text(
            yaml.safe_dump(
                {
                    "dumps": ["RS_job.zst"],
                    "out_dir": "out",
                    "crawl": {
                        "allowed_networks": ["127.0.0.0/8"],
                        "timeout_s": 3.0,
                        "retries": 0,
                        "autothrottle": False,
                    },
                    "decontaminate": {"evalsets": ["evalset.txt"]},
                }
            )
        )
        submit = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            address,
            "--",
            str(BIN / "webtext"),
            "build",
            str(tmp_path / "build.yaml"),
        ]
        result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    manifest = json.loads((tmp_path / "out" / "shards" / "manifest.json").read_text())
    crawl = next(stage for stage in manifest["funnel"] if stage["stage"] == "crawl")
    assert crawl["outcomes"]["ok"] >= 12 and crawl["outcomes"]["timeout"] == 1  # only the slow page
    assert manifest["documents"] >= 10
    assert pq.read_table(tmp_path / "out" / "shards" / "data").num_rows == manifest["documents"]
