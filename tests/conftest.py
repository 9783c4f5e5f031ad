"""Shared fixtures: one local Ray for the session, and the path of ../shared when it exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from webtext.core.runner import init_ray

SHARED = Path(__file__).resolve().parents[2] / "shared"


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
