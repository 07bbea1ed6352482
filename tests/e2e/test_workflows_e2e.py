"""The product end to end on the embedded LocalStack: CDK deploy, EventBridge trigger, Step Functions run,
timeline in DynamoDB. One deployment for the module; the local cloud is shared by the whole session."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coafi.deploy import StackOutputs
from coafi.executions import find_execution, publish_event, wait_for_execution
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

CONTENT_STEPS = ["validateParameters", "checkPermissions", "generateContent", "storeContent", "updateRegistry",
                 "notifySubscribers"]


def request(role: str = "editor", **extra: Any) -> dict[str, Any]:
    return {
        "contentType": "article",
        "parameters": {"topic": "end-to-end tests", "lengthWords": 60},
        "metadata": {"requestId": f"e2e-{uuid.uuid4()}", "userId": "tester", "role": role},
        **extra,
    }


def trigger(stack: StackOutputs, workflow: str, detail_type: str, detail: dict[str, Any],
            timeout: float = 240) -> tuple[str, dict[str, Any]]:
    since = datetime.now(UTC) - timedelta(seconds=5)
    publish_event(stack.event_bus_name, "coafi.content", detail_type, detail)
    arn = find_execution(stack.workflow_arn(workflow), detail["metadata"]["requestId"], since=since)
    return arn, wait_for_execution(arn, StateStore(stack.state_table_name), timeout=timeout)


def test_event_triggers_content_generation_and_the_timeline_is_in_dynamodb(stack: StackOutputs) -> None:
    arn, description = trigger(stack, "content-generation", "ContentRequested", request())
    assert description["status"] == "SUCCEEDED", description.get("cause")
    store = StateStore(stack.state_table_name)
    steps = store.list_steps(arn)
    assert [s.stepId for s in steps] == CONTENT_STEPS
    for s in steps:
        assert s.status == "SUCCEEDED" and s.attempts == 1
        assert s.startedAt is not None and s.endedAt is not None and s.durationMs is not None
    for earlier, later in itertools.pairwise(steps):
        assert earlier.endedAt is not None and later.startedAt is not None
        assert earlier.endedAt <= later.startedAt  # the chain ran in order
    execution = store.get_execution(arn)
    assert execution is not None and execution.status == "SUCCEEDED"
    assert execution.input["trigger"]["detailType"] == "ContentRequested"
    assert execution.output["steps"]["storeContent"]["output"]["contentId"]


def test_permission_denied_fails_the_execution_and_records_why(stack: StackOutputs) -> None:
    arn, description = trigger(stack, "content-generation", "ContentRequested", request(role="viewer"))
    assert description["status"] == "FAILED"
    assert description.get("error") == "PermissionDenied"
    store = StateStore(stack.state_table_name)
    by_id = {s.stepId: s for s in store.list_steps(arn)}
    assert set(by_id) == {"validateParameters", "checkPermissions"}
    assert by_id["checkPermissions"].status == "FAILED"
    assert by_id["checkPermissions"].error is not None
    assert by_id["checkPermissions"].error.type == "PermissionDenied"
    execution = store.get_execution(arn)
    assert execution is not None and execution.status == "FAILED"


def test_campaign_runs_subworkflows_in_parallel_then_the_chosen_branch(stack: StackOutputs) -> None:
    detail = request(launch={"immediate": False, "embargoSeconds": 1})
    arn, description = trigger(stack, "content-campaign", "CampaignRequested", detail, timeout=300)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    by_id = {s.stepId: s for s in StateStore(stack.state_table_name).list_steps(arn)}
    assert {k: v.status for k, v in by_id.items()} == {
        "article": "SUCCEEDED", "summary": "SUCCEEDED", "launchTiming": "SUCCEEDED",
        "announce": "SKIPPED", "embargo": "SUCCEEDED", "announceAfterEmbargo": "SUCCEEDED",
    }
    article, summary = by_id["article"], by_id["summary"]
    assert article.startedAt and summary.startedAt and article.endedAt and summary.endedAt
    assert article.startedAt < summary.endedAt and summary.startedAt < article.endedAt  # they overlapped
    assert by_id["article"].output["input"]["contentType"] == "article"
    assert by_id["summary"].output["input"]["contentType"] == "summary"
    assert by_id["embargo"].durationMs is not None and by_id["embargo"].durationMs >= 1000
