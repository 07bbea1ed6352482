"""Callback and signal steps run by moto's Step Functions (real ``.waitForTaskToken``, SendTaskSuccess and
SendTaskFailure) with the real state function: what a user of completeTask / failTask / signalWorkflow sees."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from coafi import aws
from coafi.definitions import WorkflowDefinition, validate_definition
from coafi.engine.wait_store import WaitRecord
from coafi.engine.waits import (
    ExecutionFinished,
    Waits,
    complete_task,
    fail_task,
    heartbeat_task,
    signal_workflow,
)
from coafi.state import StateStore
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import BUS, TABLE

T = TypeVar("T")


def _definition(workflow_id: str, *steps: dict[str, Any]) -> WorkflowDefinition:
    return validate_definition({"id": workflow_id, "name": workflow_id, "version": "1", "steps": list(steps)},
                               f"{workflow_id}.yaml", actions=set())


DEFINITIONS = [
    _definition(
        "approval",
        {"id": "review", "type": "callback", "timeoutSeconds": 120,
         "parameters": {"notify": True, "details": {"role": "editor", "draft.$": "$.input.draft"}}},
        {"id": "publish", "type": "signal", "dependencies": ["review"], "parameters": {"signal": "publish"}},
    ),
    _definition(
        "two-signals",
        {"id": "first", "type": "signal", "parameters": {"signal": "go"}},
        {"id": "second", "type": "signal", "dependencies": ["first"], "parameters": {"signal": "go"}},
    ),
    _definition("impatient", {"id": "hold", "type": "signal", "timeoutSeconds": 1, "parameters": {"signal": "never"}}),
    _definition("watched", {"id": "work", "type": "callback", "timeoutSeconds": 60,
                            "parameters": {"notify": False, "heartbeatSeconds": 2}}),
]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[InProcessCloud]:
    project = tmp_path_factory.mktemp("waits-project")
    with InProcessCloud(project, definitions=DEFINITIONS, core_root=repo_root) as running:
        yield running


@pytest.fixture
def waits(cloud: InProcessCloud) -> Waits:
    return Waits(StateStore(TABLE))


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll until ``probe`` returns something (moto runs the machine in a thread of its own)."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None or found is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout}s")
        time.sleep(0.05)
    return found


def waiting(waits: Waits, execution: str, step_id: str) -> WaitRecord:
    def probe() -> WaitRecord | None:
        record = waits.store.get_wait(execution, step_id)
        return record if record is not None and record.status == "WAITING" else None

    return eventually(probe, f"step {step_id} to wait")


def test_signal_before_the_wait_and_callback_completed_by_step_id(cloud: InProcessCloud, waits: Waits) -> None:
    events, sqs = aws.client("events"), aws.client("sqs")
    queue = sqs.create_queue(QueueName="token-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="tokens", EventBusName=BUS, EventPattern=json.dumps({"detail-type": ["TaskTokenIssued"]}))
    events.put_targets(Rule="tokens", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
    execution = cloud.start("approval", {"draft": "d-1"})
    record = waiting(waits, execution, "review")
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    detail = json.loads(message["Body"])["detail"]
    assert detail["details"] == {"role": "editor", "draft": "d-1"}  # a `.$` key is read from the step's state
    assert (detail["stepId"], detail["taskToken"], detail["timeoutSeconds"]) == ("review", record.taskToken, 120)
    early = signal_workflow(execution, "publish", {"channel": "web"}, waits=waits)
    assert early.status == "BUFFERED"  # the publish step does not wait yet
    done = complete_task(execution_id=execution, step_id="review", result={"approved": True}, waits=waits)
    assert done.via == "step"
    result = cloud.wait(execution)
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["steps"] == {"review": {"output": {"approved": True}},
                                      "publish": {"output": {"channel": "web"}}}
    assert {(s.stepId, s.stepType, s.status) for s in result.steps} == {
        ("review", "callback", "SUCCEEDED"), ("publish", "signal", "SUCCEEDED")}
    assert result.step("publish").output == {"channel": "web"}


def test_callback_completed_by_raw_token_then_a_signal_after_the_wait(cloud: InProcessCloud, waits: Waits) -> None:
    execution = cloud.start("approval", {"draft": "d-2"})
    token = waiting(waits, execution, "review").taskToken
    assert complete_task(token, result="ok", waits=waits).via == "token"
    waiting(waits, execution, "publish")
    late = signal_workflow(execution, "publish", [1, 2], waits=waits)
    # the step records WAITING a moment before it joins the signal channel: a signal in between is buffered
    # and the joining step takes it, so either answer ends with the payload delivered
    assert (late.status, late.deliveredTo) in {("DELIVERED", "publish"), ("BUFFERED", None)}
    result = cloud.wait(execution)
    assert result.status == "SUCCEEDED", result.cause
    assert result.step("review").output == "ok" and result.step("publish").output == [1, 2]


def test_fail_task_fails_the_step_and_the_execution_with_the_error(cloud: InProcessCloud, waits: Waits) -> None:
    execution = cloud.start("approval", {"draft": "d-3"})
    waiting(waits, execution, "review")
    fail_task(execution_id=execution, step_id="review", error="Rejected", cause="needs sources", waits=waits)
    result = cloud.wait(execution)
    assert (result.status, result.error) == ("FAILED", "Rejected")
    review = result.step("review")
    assert review.status == "FAILED" and review.error is not None and review.error.type == "Rejected"
    assert "publish" not in {s.stepId for s in result.steps}
    record = waits.state.get_execution(execution)
    assert record is not None and record.status == "FAILED" and record.error is not None
    assert record.error.type == "Rejected"


def test_signals_of_one_name_reach_successive_steps_in_the_order_sent(cloud: InProcessCloud, waits: Waits) -> None:
    execution = cloud.start("two-signals", {})
    eventually(lambda: waits.state.get_execution(execution), "the execution record")
    assert [signal_workflow(execution, "go", n, waits=waits).seq for n in ("a", "b")] == [0, 1]
    result = cloud.wait(execution)
    assert result.status == "SUCCEEDED", result.cause
    assert (result.step("first").output, result.step("second").output) == ("a", "b")
    assert [s["deliveredTo"] for s in waits.store.list_signals(execution)] == ["first", "second"]


def test_a_wait_past_its_timeout_fails_with_states_timeout_recorded(cloud: InProcessCloud, waits: Waits) -> None:
    execution = cloud.start("impatient", {})
    result = cloud.wait(execution)
    assert result.status == "FAILED"
    assert result.error == "WorkflowFailed" and (result.cause or "").startswith("States.Timeout")
    hold = result.step("hold")
    assert hold.status == "FAILED" and hold.error is not None and hold.error.type == "States.Timeout"
    with pytest.raises(ExecutionFinished, match="already ended FAILED"):  # nothing waits any more
        signal_workflow(execution, "never", waits=waits)


def test_heartbeats_keep_a_callback_waiting_and_their_absence_fails_it(cloud: InProcessCloud, waits: Waits) -> None:
    execution = cloud.start("watched", {})
    waiting(waits, execution, "work")
    for _ in range(3):  # 3 s in all: longer than heartbeatSeconds, so without them the step would have failed
        assert heartbeat_task(execution_id=execution, step_id="work", waits=waits).status == "WAITING"
        time.sleep(1)
    complete_task(execution_id=execution, step_id="work", result="done", waits=waits)
    assert cloud.wait(execution).status == "SUCCEEDED"

    silent = cloud.start("watched", {})
    result = cloud.wait(silent)  # within 30 s: the step's 60 s timeout cannot be what failed it
    # AWS names it States.HeartbeatTimeout; moto's interpreter reports a missed heartbeat as States.Timeout.
    missed = ("States.HeartbeatTimeout", "States.Timeout")
    assert result.status == "FAILED" and (result.cause or "").split(":")[0] in missed
    work = result.step("work")
    assert work.error is not None and work.error.type in missed


def test_wait_commands_on_the_bus_signal_and_complete_through_the_engine_api(cloud: InProcessCloud,
                                                                             waits: Waits) -> None:
    # SignalWorkflow / CompleteTask / FailTask events reach the same API function as StartWorkflow
    from coafi.engine.client import WorkflowClient
    from coafi.engine.commands import COMMAND_FAILED, COMMAND_SUCCEEDED, handle
    from coafi.testing.inprocess import BUS

    answers: list[tuple[str, dict[str, Any]]] = []
    client = WorkflowClient(TABLE, event_bus_name=BUS)

    def send(detail_type: str, detail: dict[str, Any], event_id: str) -> bool:
        event = {"id": event_id, "detail-type": detail_type, "source": "tests", "detail": detail}
        return handle(event, client, lambda t, d: answers.append((t, d)), cloud.state_machines).ok

    execution = cloud.start("approval", {"draft": "d-cmd"})
    waiting(waits, execution, "review")
    signal = {"executionId": execution, "name": "publish", "payload": {"channel": "bus"}, "correlationId": "c-9"}
    assert send("SignalWorkflow", signal, "evt-signal")
    assert send("SignalWorkflow", signal, "evt-signal")  # redelivered by EventBridge: one signal, not two
    assert answers[0][0] == COMMAND_SUCCEEDED and answers[0][1]["result"]["status"] == "BUFFERED"
    assert answers[1][1]["result"]["status"] == "DUPLICATE" and answers[1][1]["correlationId"] == "c-9"
    assert send("CompleteTask", {"executionId": execution, "stepId": "review", "result": {"ok": 1}}, "evt-done")
    result = cloud.wait(execution)
    assert result.status == "SUCCEEDED", result.cause
    assert result.step("publish").output == {"channel": "bus"}
    # a bad command is answered with CommandFailed naming the field, and a finished execution is refused
    assert not send("SignalWorkflow", {**signal, "name": "no spaces"}, "evt-bad")
    assert answers[-1][0] == COMMAND_FAILED and answers[-1][1]["error"]["field"] == "detail.name"
    assert not send("FailTask", {"executionId": execution, "stepId": "review", "error": "X"}, "evt-late")
    assert answers[-1][0] == COMMAND_FAILED and answers[-1][1]["error"]["type"] in {"NotWaiting", "ExecutionFinished"}
