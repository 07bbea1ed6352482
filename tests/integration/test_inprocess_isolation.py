"""An in-process cloud leaves nothing running when it closes (its own module: nested moto mocks share backends)."""

from __future__ import annotations

import threading
from pathlib import Path

from coafi.definitions import load_definitions
from coafi.testing import InProcessCloud


def test_closing_the_cloud_leaves_nothing_running_into_the_next_test(fixture_project: Path, repo_root: Path) -> None:
    """moto abandons a Task whose step timed out, in a thread of its own: the action sleeps on, then writes. Left
    running, such threads wrote into the moto backends of later tests (a PutItem in another test's table, metrics
    counted twice). Closing the cloud stops its executions and waits for those threads."""
    definitions = [d for d in load_definitions([fixture_project / "statemachines"]) if d.id == "too-slow"]
    before = set(threading.enumerate())
    with InProcessCloud(fixture_project, definitions=definitions, core_root=repo_root) as cloud:
        assert cloud.run("too-slow", {}, timeout=30).status == "FAILED"  # the step timed out; its action sleeps on
    left = [thread.name for thread in threading.enumerate() if thread not in before and thread.is_alive()]
    assert left == []
