"""Shared fixtures: one local Ray for the session, and the path of ../shared when it exists."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest
import ray

from webtext.core.runner import init_ray

SHARED = Path(__file__).resolve().parents[2] / "shared"


def free_ports(n: int) -> list[int]:
    """Distinct free ports on 127.0.0.1: all sockets stay bound until every port is chosen."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


# The S3-compatible test server's address goes into the environment before any Ray starts, so every
# Ray worker (they inherit the environment of the process that started Ray) reaches it the way a
# user's workers reach their object store: through the standard AWS variables.
S3_PORT = free_ports(1)[0]
os.environ.update(
    AWS_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
    AWS_ACCESS_KEY_ID="webtext-test",
    AWS_SECRET_ACCESS_KEY="webtext-test",
    AWS_DEFAULT_REGION="us-east-1",
)


SLOW_FIXTURES = {"local_ray", "s3_server", "ray_cluster"}


def pytest_collection_modifyitems(items):
    """A test that starts Ray or the S3 server is `slow`, as are the ones marked so (they start processes
    or servers): `pytest -m "not slow"` is the subset to run on every change."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto's server mode) with one bucket; yields `s3://bucket`."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    boto3.client("s3").create_bucket(Bucket="webtext-test")
    yield "s3://webtext-test"
    server.stop()


@pytest.fixture(scope="session")
def local_ray():
    """An embedded Ray with 2 CPUs and a small object store, shared by every test that needs one."""
    init_ray(num_cpus=2, object_store_memory_mb=256)
    yield
    ray.shutdown()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, for checks against real files; tests that use it skip in a user's clone."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present (it never is in a user's clone)")
    return path
