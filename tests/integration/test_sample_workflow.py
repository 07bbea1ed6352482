"""The shipped content-generation workflow, run in process on moto with its real handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coafi.state import StateStore
from coafi.testing import InProcessCloud
from tests.integration.test_inprocess_runs import CONTENT_REQUEST, statuses


@pytest.fixture(scope="module")
def sample_cloud(repo_root: Path) -> Iterator[InProcessCloud]:
    with InProcessCloud(repo_root) as cloud:
        yield cloud


def test_content_generation_succeeds_and_records_every_step(sample_cloud: InProcessCloud) -> None:
    result = sample_cloud.run("content-generation", CONTENT_REQUEST)
    assert result.status == "SUCCEEDED", result.cause
    order = ["validateParameters", "checkPermissions", "generateContent", "storeContent", "updateRegistry",
             "notifySubscribers"]
    assert [s.stepId for s in result.steps] == order
    assert all(s.status == "SUCCEEDED" and s.attempts == 1 for s in result.steps)
    assert all(s.startedAt and s.endedAt and s.durationMs is not None for s in result.steps)
    stored = result.step("storeContent").output
    assert result.step("updateRegistry").output == {"registry": "content", "contentId": stored["contentId"]}
    assert result.output["steps"]["generateContent"]["output"]["stats"]["tokensGenerated"] == 40
    execution = StateStore("coafi-test-state").get_execution(
        result.execution_arn)
    assert execution is not None and execution.status == "SUCCEEDED"
    assert execution.input["input"] == CONTENT_REQUEST


def test_content_generation_permission_denied_fails_without_running_later_steps(
    sample_cloud: InProcessCloud,
) -> None:
    request = CONTENT_REQUEST | {"metadata": {"userId": "bob", "role": "viewer", "requestId": "req-2"}}
    result = sample_cloud.run("content-generation", request)
    assert result.status == "FAILED"
    assert result.error == "PermissionDenied"
    assert "user 'bob' with role 'viewer' may not generate:article" in (result.cause or "")
    assert statuses(result) == {"validateParameters": "SUCCEEDED", "checkPermissions": "FAILED"}
    failed = result.step("checkPermissions")
    assert failed.error is not None and failed.error.type == "PermissionDenied"
    assert failed.attempts == 1  # permanent errors are not retried


def test_every_step_emits_its_metrics_with_workflow_and_step_dimensions(
    sample_cloud: InProcessCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    capsys.readouterr()
    result = sample_cloud.run("content-generation", CONTENT_REQUEST)
    assert result.status == "SUCCEEDED", result.cause
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    by_step = {d["step"]: d for d in documents if d.get("workflow") == "content-generation" and "step" in d}
    assert set(by_step) == {s.stepId for s in result.steps}
    # the state function counts the run itself: workflow dimension only, the execution id as metadata
    runs = [d for d in documents if d.get("workflow") == "content-generation" and "step" not in d]
    assert [(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], d["executionId"]) for d in runs] == [
        ([["workflow"]], result.execution_arn)] * 2
    assert [m["Name"] for d in runs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "WorkflowStarted", "WorkflowSucceeded"]
    for document in by_step.values():
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Dimensions"] == [["workflow", "step"]]
        assert {m["Name"] for m in directive["Metrics"]} == {"StepStarted", "StepSucceeded", "StepDuration"}
        values = {k: v if isinstance(v, list) else [v] for k, v in document.items() if k.startswith("Step")}
        assert values["StepSucceeded"] == [1] and values["StepStarted"] == [1]
        assert len(values["StepDuration"]) == 1 and values["StepDuration"][0] >= 0
