"""Compensation (saga) and schedule steps: validated, compiled, and run in process on moto with the real
state function and the sample actions (statemachines/order-saga.yaml, functions/actions/saga-*)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.compiler import compile_workflow
from coafi.definitions import DefinitionError, load_definitions, validate_definition
from coafi.saga.ops import task_id_for
from coafi.state import StateStore
from coafi.tasks import TaskScheduler, TaskSettings
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import TABLE

ORDER = {"orderId": "o-1"}
SCHEDULES = {
    "id": "schedules", "name": "Schedules", "version": "1",
    "steps": [
        {"id": "now", "type": "schedule", "parameters": {"task": "saga-step", "payload": "$.input.order"}},
        {"id": "soon", "type": "schedule", "parameters": {"task": "saga-step", "delaySeconds": 60}},
        {"id": "weekly", "type": "schedule", "parameters": {
            "task": "workflow:order-follow-up", "cron": "0 9 ? * MON *", "timezone": "Europe/Berlin",
            "windowMinutes": 0, "payload": {"kind": "weekly", "order.$": "$.input.order"}}},
    ],
}


@pytest.fixture(scope="module")
def cloud(repo_root: Path) -> Iterator[InProcessCloud]:
    definitions = load_definitions([repo_root / "statemachines" / "order-saga.yaml",
                                    repo_root / "statemachines" / "order-follow-up.yaml"])
    definitions.append(validate_definition(SCHEDULES, "schedules.yaml", actions={"saga-step"}))
    with InProcessCloud(repo_root, definitions=definitions) as cloud, pytest.MonkeyPatch.context() as mp:
        sqs = aws.client("sqs")
        dlq = sqs.create_queue(QueueName="coafi-test-dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName="coafi-test-tasks")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        aws.client("scheduler").create_schedule_group(Name="coafi-test-schedules")
        for key, value in {"COAFI_TASK_QUEUE_URL": queue, "COAFI_TASK_QUEUE_ARN": arn,
                           "COAFI_DEAD_LETTER_QUEUE_ARN": dlq_arn, "COAFI_SCHEDULE_GROUP_NAME": "coafi-test-schedules",
                           "COAFI_TASK_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/coafi-test"}.items():
            mp.setenv(key, value)
        yield cloud


def compensations(result: Any) -> list[str]:
    """The compensation steps in the order they ran (history order of their STEP_STARTED events)."""
    history = StateStore(TABLE).get_execution_history(result.execution_arn)
    return [e.stepId.removesuffix(".compensate") for e in history
            if e.type == "STEP_STARTED" and e.stepId and e.stepId.endswith(".compensate")]


def completion_order(result: Any) -> list[str]:
    history = StateStore(TABLE).get_execution_history(result.execution_arn)
    return [e.stepId for e in history if e.type == "STEP_SUCCEEDED" and e.stepId and "." not in e.stepId]


# -- definitions ----------------------------------------------------------------------------------------------
def _definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"id": "wf", "name": "wf", "version": "1", "steps": list(steps)}


@pytest.mark.parametrize(("step", "path", "words"), [
    ({"id": "w", "type": "wait", "parameters": {"seconds": 1}, "compensate": "saga-undo"}, "steps[0].compensate",
     "nothing to compensate"),
    ({"id": "a", "action": "saga-step", "compensate": "Not An Action"}, "steps[0].compensate", "not an action"),
    ({"id": "a", "action": "saga-step", "compensate": "undo-it"}, "steps[0].compensate",
     "unknown action 'undo-it'"),
    ({"id": "s", "type": "schedule", "action": "saga-step", "parameters": {"task": "saga-step"}}, "steps[0].action",
     "parameters.task"),
    ({"id": "s", "type": "schedule", "parameters": {"task": "saga-step", "delaySeconds": 5, "cron": "rate(1 hour)"}},
     "steps[0].parameters", "not both"),
    ({"id": "s", "type": "schedule", "parameters": {"task": "saga-step", "cron": "0 9 * * *"}},
     "steps[0].parameters.cron", "cron"),
    ({"id": "s", "type": "schedule", "parameters": {"task": "sage-step"}}, "steps[0].parameters.task",
     "did you mean 'saga-step'"),
])
def test_mistakes_are_reported_at_the_field(step: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(_definition(step), "wf.yaml", actions={"saga-step", "saga-undo"})
    problems = [p for p in info.value.problems if p.path.startswith(path)]
    assert problems, info.value.problems
    assert any(words.lower() in p.message.lower() for p in problems), problems


def test_a_workflow_without_compensations_compiles_as_before(repo_root: Path) -> None:
    compiled = compile_workflow(validate_definition(_definition({"id": "a", "action": "saga-step"}), "wf.yaml"))
    assert "coafi.compensate" not in compiled.asl["States"]
    assert compiled.asl["States"]["coafi.run"]["Catch"][0]["Next"] == "coafi.failed"


def test_compensations_are_compiled_into_the_failure_path(repo_root: Path) -> None:
    [saga] = load_definitions([repo_root / "statemachines" / "order-saga.yaml"])
    compiled = compile_workflow(saga)
    states = compiled.asl["States"]
    assert states["coafi.run"]["Catch"][0]["Next"] == "coafi.compensate"
    assert states["coafi.compensate"]["Next"] == "coafi.compensate.run"
    assert states["coafi.compensate.run"]["MaxConcurrency"] == 1
    assert states["coafi.compensate.run"]["Next"] == "coafi.failed"
    assert states["coafi.failed"]["Next"] == "coafi.fail"  # still fails with the original error
    assert "saga-undo" in compiled.actions  # so the CDK app grants the machine its invocation
    table = json.loads(states["coafi.compensate"]["Parameters"]["Payload"]["compensations"])
    assert set(table) == {"reserve", "charge", "pack", "label"}
    assert table["pack"]["dependencies"] == ["charge", "reserve"]


def test_a_schedule_step_is_one_state_function_call(repo_root: Path) -> None:
    [saga] = load_definitions([repo_root / "statemachines" / "order-saga.yaml"])
    states = compile_workflow(saga).asl["States"]["coafi.run"]["Branches"][0]["States"]
    state = states["followUp"]
    payload = state["Parameters"]["Payload"]
    assert payload["op"] == "schedule" and payload["task"] == "workflow:order-follow-up"
    assert payload["delaySeconds"] == 259200 and payload["payload"] == {"orderId.$": "$.input.orderId"}
    assert state["ResultPath"] == "$.steps.followUp"


# -- runs -----------------------------------------------------------------------------------------------------
def test_a_permanent_failure_runs_the_compensations_in_reverse_completion_order(cloud: InProcessCloud) -> None:
    result = cloud.run("order-saga", {**ORDER, "failAt": "ship"})
    assert result.status == "FAILED"
    assert result.error == "StepRefused"  # the original error, not a compensation's
    done = completion_order(result)
    assert done[:2] == ["reserve", "charge"] and set(done[2:]) == {"pack", "label"}  # pack || label
    assert compensations(result) == list(reversed(done))  # ship failed: nothing of it to undo
    for step in ("reserve", "charge", "pack", "label"):
        record = result.step(f"{step}.compensate")
        assert record.status == "SUCCEEDED" and record.stepType == "compensation"
        assert record.output["undone"] == step and record.output["because"] == "StepRefused"
        assert record.output["of"]["step"] == step  # the compensation saw the step's output
    assert result.step("ship").status == "FAILED"
    state = StateStore(TABLE).get_state(result.execution_arn)
    assert state.status == "FAILED" and state.error is not None and state.error.type == "StepRefused"


def test_only_completed_steps_are_compensated(cloud: InProcessCloud) -> None:
    result = cloud.run("order-saga", {**ORDER, "failAt": "charge"})
    assert result.status == "FAILED" and result.error == "StepRefused"
    assert compensations(result) == ["reserve"]


def test_a_failing_compensation_is_recorded_and_the_others_still_run(cloud: InProcessCloud) -> None:
    result = cloud.run("order-saga", {**ORDER, "failAt": "ship", "failUndoOf": "charge"})
    assert result.status == "FAILED" and result.error == "StepRefused"
    assert compensations(result)[-2:] == ["charge", "reserve"]
    failed = result.step("charge.compensate")
    assert failed.status == "FAILED" and failed.error is not None and failed.error.type == "UndoFailed"
    assert result.step("reserve.compensate").status == "SUCCEEDED"
    assert "coafi.compensate.failed" in result.entered_states()


def test_a_schedule_step_schedules_its_task_and_the_workflow_goes_on(cloud: InProcessCloud) -> None:
    result = cloud.run("order-saga", ORDER)
    assert result.status == "SUCCEEDED", result.cause
    output = result.step("followUp").output
    assert output["taskId"] == task_id_for(result.execution_arn, "followUp")
    assert output["route"] == "at" and output["status"] == "DELAYED"  # three days: a Scheduler at() schedule
    assert result.step("followUp").stepType == "schedule"
    settings = TaskSettings.from_env()
    record = TaskScheduler(settings).get_task_status(output["taskId"], refresh=False)
    assert record.type == "workflow:order-follow-up" and record.payload == {"orderId": "o-1"}
    assert record.metadata["executionId"] == result.execution_arn
    names = [s["Name"] for s in aws.client("scheduler").list_schedules(GroupName=settings.schedule_group)["Schedules"]]
    assert record.scheduleName in names
    assert not any(s.stepId.endswith(".compensate") for s in result.steps)


def test_schedule_steps_take_the_scheduler_s_routes(cloud: InProcessCloud) -> None:
    result = cloud.run("schedules", {"order": {"id": "o-7"}})
    assert result.status == "SUCCEEDED", result.cause
    scheduler = TaskScheduler(TaskSettings.from_env())
    now, soon, weekly = (scheduler.get_task_status(result.step(s).output["taskId"], refresh=False)
                         for s in ("now", "soon", "weekly"))
    assert (now.route.value, now.status.value, now.payload) == ("queue", "SCHEDULED", {"id": "o-7"})
    assert (soon.route.value, soon.status.value) == ("queue", "DELAYED")
    assert (weekly.route.value, weekly.cron, weekly.timezone) == ("cron", "cron(0 9 ? * MON *)", "Europe/Berlin")
    assert weekly.payload == {"kind": "weekly", "order": {"id": "o-7"}}
    messages = aws.client("sqs").receive_message(QueueUrl=scheduler.settings.queue_url, MaxNumberOfMessages=10,
                                                 VisibilityTimeout=0)["Messages"]
    assert json.loads(messages[0]["Body"])["taskId"] == now.id  # the delayed one is not visible yet
    assert len(messages) == 1


def test_a_state_put_before_coafi_failed_by_another_feature_still_leads_into_the_compensations() -> None:
    from coafi.saga.compiler import _route_failures_through_compensation

    states: dict[str, dict[str, Any]] = {
        "coafi.run": {"Type": "Parallel", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "coafi.escalate"}]},
        "coafi.escalate": {"Type": "Task", "Next": "coafi.failed"},
        "coafi.compensate": {"Type": "Task", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "coafi.failed"}],
                             "Next": "coafi.compensate.run"},
        "coafi.compensate.run": {"Type": "Map", "Next": "coafi.failed"},
        "coafi.failed": {"Type": "Task", "Next": "coafi.fail"},
    }
    _route_failures_through_compensation(states)
    assert states["coafi.run"]["Catch"][0]["Next"] == "coafi.escalate"
    assert states["coafi.escalate"]["Next"] == "coafi.compensate"
    assert states["coafi.compensate"]["Catch"][0]["Next"] == "coafi.failed"
    assert states["coafi.compensate.run"]["Next"] == "coafi.failed"
