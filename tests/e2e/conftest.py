"""The e2e tier shares ONE local cloud for the whole session.

* ``AWS_ENDPOINT_URL`` set and healthy (a LocalStack of yours, or one started with ``coafi local up``): reused,
  never stopped by the tests.
* Otherwise the embedded LocalStack is started with :func:`coafi.local.up` (installing it on first use) and
  stopped at the end of the session - only if this session started it.

For the tests' duration the SDK environment points at it: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID=test``,
``AWS_SECRET_ACCESS_KEY=test``, ``AWS_DEFAULT_REGION=us-east-1`` (restored afterwards).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coafi.deploy import StackOutputs, deploy
from coafi.local import health
from coafi.local.harness import DEFAULT_ENDPOINT, DEFAULT_REGION, LocalCloudInfo, down, up


def _reachable_endpoint() -> str | None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "").strip().rstrip("/")
    if endpoint and health.is_ready(health.fetch_health(endpoint)):
        return endpoint
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "restarts_local_cloud: restarts the session's LocalStack; runs last")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the local cloud run after all others: the restart loses the session's deployment."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_local_cloud") is not None)


@pytest.fixture(scope="session")
def local_cloud(repo_root: Path) -> Iterator[LocalCloudInfo]:
    endpoint = _reachable_endpoint()
    if endpoint is not None:
        info = LocalCloudInfo(
            endpoint=endpoint, pid=None, started=False, log_file=None, embedded=endpoint == DEFAULT_ENDPOINT
        )
    else:
        info = up(project_root=repo_root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", info.endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        mp.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
        mp.setenv("AWS_REGION", DEFAULT_REGION)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        try:
            yield info
        finally:
            if info.started:
                down(project_root=repo_root)


@pytest.fixture(scope="session")
def stack(local_cloud: LocalCloudInfo, repo_root: Path) -> StackOutputs:
    """The project's CDK app deployed once per session to the local cloud (every e2e file shares it)."""
    return deploy(local=True, project_root=repo_root)
