"""Callback and signal steps end to end on the embedded LocalStack: the deployed content-approval workflow
(statemachines/content-approval.yaml) waits for completeTask / failTask and for the ``publish`` signal."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from coafi import aws
from coafi.deploy import StackOutputs
from coafi.engine.wait_store import WaitRecord
from coafi.engine.waits import Waits, complete_task, fail_task, signal_workflow
from coafi.executions import wait_for_execution
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

WORKFLOW = "content-approval"
T = TypeVar("T")


@pytest.fixture
def waits(stack: StackOutputs) -> Waits:
    return Waits(StateStore(stack.state_table_name))


def start(stack: StackOutputs) -> str:
    arn: str = aws.client("stepfunctions").start_execution(
        stateMachineArn=stack.workflow_arn(WORKFLOW), name=f"e2e-{uuid.uuid4()}",
        input=json.dumps({"draft": "the draft"}),
    )["executionArn"]
    return arn


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 120.0) -> T:
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout:.0f}s")
        time.sleep(0.5)
    return found


def waiting(waits: Waits, execution: str, step_id: str) -> WaitRecord:
    def probe() -> WaitRecord | None:
        record = waits.store.get_wait(execution, step_id)
        return record if record is not None and record.status == "WAITING" else None

    return eventually(probe, f"step {step_id} of {execution} to wait")


def finish(stack: StackOutputs, execution: str) -> dict[str, Any]:
    return wait_for_execution(execution, StateStore(stack.state_table_name), timeout=180)


@pytest.fixture
def token_events(stack: StackOutputs) -> Iterator[Callable[[str], dict[str, Any]]]:
    """TaskTokenIssued events of the app's bus, through a rule to a queue of this test."""
    events, sqs = aws.client("events"), aws.client("sqs")
    name = f"e2e-tokens-{uuid.uuid4().hex[:8]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=stack.event_bus_name,
                    EventPattern=json.dumps({"source": ["coafi"], "detail-type": ["TaskTokenIssued"]}))
    events.put_targets(Rule=name, EventBusName=stack.event_bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}])

    def issued_for(execution: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1).get("Messages", []):
                event: dict[str, Any] = json.loads(message["Body"])
                if event["detail"]["executionId"] == execution:
                    return event
            return None

        return eventually(probe, f"TaskTokenIssued of {execution}")

    try:
        yield issued_for
    finally:
        events.remove_targets(Rule=name, EventBusName=stack.event_bus_name, Ids=["queue"])
        events.delete_rule(Name=name, EventBusName=stack.event_bus_name)
        sqs.delete_queue(QueueUrl=queue)


def test_signal_before_the_wait_then_callback_completed_by_step_id(stack: StackOutputs, waits: Waits) -> None:
    execution = start(stack)
    waiting(waits, execution, "review")
    early = signal_workflow(execution, "publish", {"channel": "web"}, waits=waits)
    assert early.status == "BUFFERED"  # publish does not wait yet: the signal is kept for it
    assert complete_task(execution_id=execution, step_id="review", result={"approved": True}, waits=waits).via \
        == "step"
    description = finish(stack, execution)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    output = json.loads(description["output"])
    assert output["steps"] == {"review": {"output": {"approved": True}}, "publish": {"output": {"channel": "web"}}}
    steps = {s.stepId: s for s in waits.state.list_steps(execution)}
    assert {k: (v.stepType, v.status) for k, v in steps.items()} == {
        "review": ("callback", "SUCCEEDED"), "publish": ("signal", "SUCCEEDED")}
    assert steps["review"].output == {"approved": True}


def test_callback_completed_by_the_announced_token_then_a_signal_after_the_wait(
        stack: StackOutputs, waits: Waits, token_events: Callable[[str], dict[str, Any]]) -> None:
    execution = start(stack)
    event = token_events(execution)  # the state function announced the wait on the app's bus
    assert event["detail"]["stepId"] == "review"
    assert event["detail"]["details"] == {"role": "editor", "instructions": "Approve or reject the draft"}
    assert complete_task(event["detail"]["taskToken"], result="looks good", waits=waits).via == "token"
    waiting(waits, execution, "publish")
    late = signal_workflow(execution, "publish", "now", waits=waits)
    assert (late.status, late.deliveredTo) == ("DELIVERED", "publish")
    description = finish(stack, execution)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    steps = {s.stepId: s.output for s in waits.state.list_steps(execution)}
    assert steps == {"review": "looks good", "publish": "now"}


def test_fail_task_fails_the_execution_with_the_error_recorded(stack: StackOutputs, waits: Waits) -> None:
    execution = start(stack)
    waiting(waits, execution, "review")
    fail_task(execution_id=execution, step_id="review", error="Rejected", cause="needs sources", waits=waits)
    description = finish(stack, execution)
    assert (description["status"], description.get("error"), description.get("cause")) == (
        "FAILED", "Rejected", "needs sources")
    [review] = waits.state.list_steps(execution)
    assert review.stepId == "review" and review.status == "FAILED"
    assert review.error is not None and (review.error.type, review.error.message) == ("Rejected", "needs sources")
    record = waits.state.get_execution(execution)
    assert record is not None and record.status == "FAILED"
    assert record.error is not None and record.error.type == "Rejected"
