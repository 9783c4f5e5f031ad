"""Object storage and a multi-node Ray cluster, for real: a build whose every output goes to an
S3-compatible server, run on one node and on a 2-node cluster, gives the same shards."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import yaml

from tests.conftest import free_ports
from webtext import pipeline
from webtext.core import storage
from webtext.core.config import load_config
from webtext.demo.dump import write_dump
from webtext.demo.run import demo_evalset, paragraphs
from webtext.demo.site import DemoSite

BIN = Path(sys.executable).parent


def test_storage_round_trip_on_s3(s3_server):
    base = f"{s3_server}/roundtrip"
    storage.write_json(f"{base}/a/_stats.json", {"n": 1})
    storage.write_parquet(f"{base}/a/part-00000.parquet", pa.table({"x": [1, 2, 3]}))
    assert storage.read_json(f"{base}/a/_stats.json") == {"n": 1}
    assert storage.parquet_files(f"{base}/a") == [f"{base}/a/part-00000.parquet"]  # bookkeeping files hidden
    assert storage.parquet_metadata(f"{base}/a/part-00000.parquet").num_rows == 3
    storage.delete(f"{base}/a")
    assert not storage.exists(f"{base}/a/_stats.json")


@pytest.fixture
def two_nodes():
    """A Ray cluster of two nodes (a head and a worker, one CPU each) on this machine, every port its own."""
    from ray.cluster_utils import Cluster

    def node_args(**extra):
        ports = free_ports(6)
        return dict(
            num_cpus=1,
            object_store_memory=150 * 2**20,
            include_dashboard=False,
            dashboard_agent_listen_port=ports[0],
            metrics_export_port=ports[1],
            runtime_env_agent_port=ports[2],
            metrics_agent_port=ports[3],
            dashboard_port=ports[4],
            min_worker_port=0,
            max_worker_port=0,
            **extra,
        )

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Unix socket paths must stay short
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args=node_args(temp_dir=temp_dir, gcs_server_port=free_ports(1)[0]),
    )
    cluster.add_node(**node_args())
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()


def build_config(folder: Path, dump: str, evalset: str, out_dir: str) -> Path:
    path = folder / f"build-{out_dir.rsplit('/', 1)[-1]}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dumps": [dump],
                "out_dir": out_dir,
                "crawl": {"allowed_networks": ["127.0.0.0/8"], "timeout_s": 3.0, "retries": 0, "autothrottle": False},
                "decontaminate": {"evalsets": [evalset]},
            }
        )
    )
    return path


def shards_of(out_dir: str) -> dict[str, str]:
    fs, path = storage.resolve(storage.join(out_dir, "shards", "data"))
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=["id", "text"])
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def test_build_on_s3_is_the_same_on_one_and_two_nodes(tmp_path, s3_server, local_ray, two_nodes):
    evalset = demo_evalset(tmp_path)
    with DemoSite(seed=5, n_articles=16, eval_passages=paragraphs(evalset)[:1], slow_seconds=0.2) as site:
        write_dump(tmp_path / "RS_s3.zst", site.links(), seed=5)
        # inputs on the object store too, as on a real cluster where nodes share no disk
        storage.write_bytes(f"{s3_server}/inputs/RS_s3.zst", (tmp_path / "RS_s3.zst").read_bytes())
        storage.write_bytes(f"{s3_server}/inputs/evalset.txt", evalset.read_bytes())
        results = {}
        for label in ("one", "two"):
            out_dir = f"{s3_server}/builds/{label}"
            config = build_config(tmp_path, f"{s3_server}/inputs/RS_s3.zst", f"{s3_server}/inputs/evalset.txt", out_dir)
            if label == "one":  # this test session's own one-node Ray
                pipeline.build(load_config(config))
            else:  # `webtext build` as a driver of the 2-node cluster
                env = {**os.environ, "RAY_ADDRESS": two_nodes}
                run = subprocess.run(
                    [str(BIN / "webtext"), "build", str(config)], env=env, capture_output=True, text=True, timeout=600
                )
                assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            results[label] = shards_of(out_dir)
            manifest = storage.read_json(storage.join(out_dir, "shards", "manifest.json"))
            assert manifest["documents"] == len(results[label]) > 5
    assert not (tmp_path / "s3:").exists()  # nothing went to a local folder named after the URI
    assert results["one"] == results["two"]
