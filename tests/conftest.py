"""Shared pytest set-up for the whole suite.

- Ray's environment (loopback-only cluster, no token auth, no usage stats) is set before anything
  imports ray.
- ``ray_session``: one local Ray for the whole session (``ray.init`` costs ~6-9 s here), shut down
  at the end; integration and e2e tests depend on it. If Ray is already initialised (by another
  fixture or by the code under test) it is reused and left running.
- Markers: tests under ``tests/integration`` get ``ray``, tests under ``tests/e2e`` get ``browser``
  (select with ``-m 'not browser'`` and the like).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # advertise 127.0.0.1 only
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token side effect
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray shared by the session: ``ray.init(num_cpus=2, ...)`` unless one is running.

    Yields the RayContext (or None when Ray was already initialised elsewhere).
    """
    import ray

    if ray.is_initialized():
        yield None
        return
    os.environ.setdefault("RAY_worker_niceness", "0")  # as ensure_ray: media workers at nice 0
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                   logging_level="ERROR", object_store_memory=128 * 1024 * 1024)
    try:
        yield ctx
    finally:
        ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder: integration → ``ray``, e2e → ``browser``."""
    integration = TESTS_DIR / "integration"
    e2e = TESTS_DIR / "e2e"
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.is_relative_to(integration):
            item.add_marker(pytest.mark.ray)
        elif path.is_relative_to(e2e):
            item.add_marker(pytest.mark.browser)
