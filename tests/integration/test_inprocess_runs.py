"""Compiled workflows run in process on moto with the real handlers: what a user sees happen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi.definitions import load_definitions
from coafi.testing import InProcessCloud

CONTENT_REQUEST = {
    "contentType": "article",
    "parameters": {"topic": "durable workflows", "lengthWords": 40},
    "metadata": {"userId": "ada", "role": "editor", "requestId": "req-1"},
}


@pytest.fixture(scope="module")
def fixture_cloud(fixture_project: Path, repo_root: Path) -> Iterator[InProcessCloud]:
    definitions = load_definitions([fixture_project / "statemachines"])
    with InProcessCloud(fixture_project, definitions=definitions, core_root=repo_root) as cloud:
        yield cloud


def statuses(result: Any) -> dict[str, str]:
    return {s.stepId: s.status for s in result.steps}


def test_independent_steps_run_concurrently_and_the_join_sees_both(fixture_cloud: InProcessCloud) -> None:
    result = fixture_cloud.run("diamond", {"x": 1})
    assert result.status == "SUCCEEDED", result.cause
    assert result.step("d").output["saw"] == ["a", "b", "c"]
    entered = result.entered_states()
    assert "parallel.1" in entered
    b, c = result.step("b"), result.step("c")
    assert b.startedAt and c.startedAt and b.endedAt and c.endedAt
    assert b.startedAt <= c.endedAt and c.startedAt <= b.endedAt  # the two attempts overlapped


def test_decision_runs_one_branch_and_records_the_other_skipped(fixture_cloud: InProcessCloud) -> None:
    big = fixture_cloud.run("routing", {"amount": 500})
    assert big.status == "SUCCEEDED", big.cause
    assert statuses(big) == {
        "intake": "SUCCEEDED", "route": "SUCCEEDED", "review": "SUCCEEDED", "reviewFollowUp": "SUCCEEDED",
        "autoApprove": "SKIPPED", "notify": "SUCCEEDED", "audit": "SUCCEEDED",
    }
    assert big.step("route").output == {"branch": "choice-1", "next": ["review"]}
    assert "autoApprove" not in big.entered_states()

    small = fixture_cloud.run("routing", {"amount": 5})
    assert statuses(small)["review"] == "SKIPPED" and statuses(small)["reviewFollowUp"] == "SKIPPED"
    assert statuses(small)["autoApprove"] == "SUCCEEDED"
    # audit is independent of the decision: it runs in a parallel branch, so notify does not see it
    assert small.step("notify").output["saw"] == ["autoApprove", "intake", "route"]

    missing = fixture_cloud.run("routing", {"note": "no amount at all"})
    assert missing.status == "SUCCEEDED"
    assert statuses(missing)["autoApprove"] == "SUCCEEDED"  # a missing fact takes the default branch


def test_transient_failures_are_retried_up_to_max_attempts(fixture_cloud: InProcessCloud) -> None:
    result = fixture_cloud.run("resilience", {"order": 7}, timeout=60)
    flaky = result.step("flakyCall")
    assert flaky.status == "SUCCEEDED" and flaky.attempts == 3
    assert flaky.output == {"succeededOnAttempt": 3}
    assert result.step("pause").status == "SUCCEEDED"  # a wait step is recorded around
    slow = result.step("slow")
    assert slow.status == "FAILED" and slow.attempts == 2  # retries exhausted
    assert result.status == "FAILED" and result.error == "TransientError"


def test_permanent_failure_is_not_retried_and_fails_the_workflow(fixture_cloud: InProcessCloud) -> None:
    result = fixture_cloud.run("doomed", {})
    assert result.status == "FAILED"
    assert result.error == "Rejected"
    assert statuses(result) == {"first": "SUCCEEDED", "refuse": "FAILED"}
    assert result.step("refuse").attempts == 1
    assert "never" not in result.entered_states()


def test_step_timeout_fails_the_workflow_naming_the_timeout(fixture_cloud: InProcessCloud) -> None:
    result = fixture_cloud.run("too-slow", {}, timeout=30)
    assert result.status == "FAILED"
    # "States.*" errors cannot be re-raised by a Fail state: the workflow fails as WorkflowFailed, cause kept
    assert result.error == "WorkflowFailed"
    assert (result.cause or "").startswith("States.Timeout")
    nap = result.step("nap")
    assert nap.status == "FAILED"
