"""Saga, dead letters and schedule steps end to end on the local cloud, with the deployed sample workflows
(statemachines/order-saga.yaml, order-follow-up.yaml; functions/actions/saga-step, saga-undo):

- a permanent failure runs the compensations of the completed steps in reverse completion order, each recorded in
  the history, and the execution still fails with the original error;
- a poison message (a task whose action is throttled: reserved concurrency 0) lands in the dead-letter queue
  after the task queue's maxReceiveCount, and once the action is fixed ``coafi dlq redrive`` sends it back and
  the task succeeds;
- an asynchronous invocation of a switched-off action goes to the DLQ (on-failure destination) and, once the
  action is back, the redrive invokes it again with the same payload;
- a schedule step starts a workflow three days later, when the local clock moves;
- ``coafi redrive``: LocalStack has no RedriveExecution; ``--restart`` runs the same input again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from coafi import aws, naming
from coafi.cli.main import main
from coafi.deploy import StackOutputs
from coafi.local.schedules import advance_clock, local_clock, tick
from coafi.saga.dlq import DeadLetter, DeadLetterQueues
from coafi.saga.redrive import RedriveNotSupported, redrive_execution
from coafi.state import StateStore
from coafi.tasks import Task, TaskScheduler, TaskSettings, TaskStatus

pytestmark = pytest.mark.localstack
T = TypeVar("T")
#: The task queue hides a message this long between receives during the poison test (30 s otherwise): five
#: receives take seconds instead of minutes. Restored afterwards.
FAST_VISIBILITY_SECONDS = "2"


def eventually(probe: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def finished(execution_arn: str, timeout: float = 120) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")

    def probe() -> dict[str, Any] | None:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        return None if description["status"] == "RUNNING" else description

    return eventually(probe, timeout, f"{execution_arn} to end")


def start(stack: StackOutputs, workflow: str, payload: dict[str, Any], name: str | None = None) -> str:
    arn: str = aws.client("stepfunctions").start_execution(
        stateMachineArn=stack.workflow_arn(workflow), input=json.dumps(payload),
        name=name or f"e2e-{uuid.uuid4().hex[:12]}")["executionArn"]
    return arn


@pytest.fixture(scope="module")
def scheduler(stack: StackOutputs) -> TaskScheduler:
    return TaskScheduler(TaskSettings.from_stack(stack.stack_name))


@pytest.fixture(scope="module")
def dead_letters(stack: StackOutputs) -> DeadLetterQueues:
    return DeadLetterQueues.from_stack(stack.stack_name)


def test_a_permanent_failure_runs_the_compensations_in_reverse(stack: StackOutputs) -> None:
    execution = start(stack, "order-saga", {"orderId": "o-e2e-1", "failAt": "ship"})
    description = finished(execution)
    assert description["status"] == "FAILED"
    assert description.get("error") == "StepRefused"  # the original error, after the compensations
    history = StateStore(stack.state_table_name).get_execution_history(execution)
    completed = [e.stepId for e in history if e.type == "STEP_SUCCEEDED" and e.stepId and "." not in e.stepId]
    assert completed[:2] == ["reserve", "charge"] and set(completed[2:]) == {"pack", "label"}
    compensated = [e.stepId for e in history
                   if e.type == "STEP_STARTED" and e.stepId is not None and e.stepId.endswith(".compensate")]
    assert compensated == [f"{s}.compensate" for s in reversed(completed)]
    steps = {s.stepId: s for s in StateStore(stack.state_table_name).list_steps(execution)}
    assert all(steps[c].status == "SUCCEEDED" and steps[c].stepType == "compensation" for c in compensated)
    assert steps["reserve.compensate"].output["undone"] == "reserve"
    assert steps["ship"].status == "FAILED"
    ends = [e.type for e in history if e.type.startswith("WORKFLOW_")]
    assert ends == ["WORKFLOW_STARTED", "WORKFLOW_FAILED"]
    assert history[-1].type == "WORKFLOW_FAILED"  # recorded after the compensations


def action_function(stack: StackOutputs, action: str) -> str:
    """The deployed function of an action (its name is derived from the dispatcher's environment)."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in aws.client("cloudformation").describe_stacks(
        StackName=stack.stack_name)["Stacks"][0]["Outputs"]}
    env = aws.client("lambda").get_function_configuration(
        FunctionName=outputs["TaskDispatcherFunctionName"])["Environment"]
    return naming.action_functions(env["Variables"])[action]


@pytest.fixture
def throttled_action(stack: StackOutputs, scheduler: TaskScheduler) -> Iterator[str]:
    """saga-step throttled (reserved concurrency 0) and the task queue's visibility timeout short."""
    lam, sqs = aws.client("lambda"), aws.client("sqs")
    function = action_function(stack, "saga-step")
    queue = scheduler.settings.queue_url
    before = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])["Attributes"]
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": FAST_VISIBILITY_SECONDS})
    try:
        yield function
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": before["VisibilityTimeout"]})
        lam.delete_function_concurrency(FunctionName=function)


def test_a_poison_message_lands_in_the_dlq_and_is_redriven_after_the_fix(
    stack: StackOutputs, scheduler: TaskScheduler, dead_letters: DeadLetterQueues, throttled_action: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = scheduler.schedule_task(Task(type="saga-step", payload={"orderId": "o-e2e-dlq"}))

    def dead_lettered() -> DeadLetter | None:
        return next((x for x in dead_letters.show(limit=50) if record.id in x.body), None)

    letter = eventually(dead_lettered, 120, "the throttled task in the dead-letter queue", every=2)
    assert letter.source == "queue"  # moved by the task queue's redrive policy
    assert letter.target is not None and letter.target.endswith(scheduler.settings.queue_url.rsplit("/", 1)[-1])
    assert letter.receiveCount >= 1
    # each delivery claimed the task and gave the claim back (DISPATCHED, lease lapsed) when the action was
    # throttled: never run, never finished
    waiting = scheduler.get_task_status(record.id)
    assert waiting.status in (TaskStatus.SCHEDULED, TaskStatus.DISPATCHED) and waiting.attempts >= 1
    assert StateStore(stack.state_table_name).list_steps(f"task:{record.id}") == []  # the action never ran
    assert main(["dlq", "--stack", stack.stack_name, "ls"]) == 0
    assert "waiting" in capsys.readouterr().out
    # the fix: the action may run again
    aws.client("lambda").delete_function_concurrency(FunctionName=throttled_action)
    assert main(["dlq", "--stack", stack.stack_name, "redrive", "--id", letter.messageId]) == 0
    assert "1 redriven, 0 kept" in capsys.readouterr().out
    done = eventually(lambda: (r if (r := scheduler.get_task_status(record.id)).status in
                               (TaskStatus.SUCCEEDED, TaskStatus.FAILED) else None), 120, "the redriven task")
    assert done.status == TaskStatus.SUCCEEDED, done.error
    assert done.output["orderId"] == "o-e2e-dlq"
    assert dead_lettered() is None  # deleted from the DLQ once re-sent


def test_a_failed_asynchronous_invocation_lands_in_the_dlq_and_is_invoked_again(
    stack: StackOutputs, dead_letters: DeadLetterQueues,
) -> None:
    lam = aws.client("lambda")
    function = action_function(stack, "saga-step")
    execution = f"e2e-async-{uuid.uuid4().hex[:12]}"
    event = {"context": {"executionId": execution, "workflowId": "e2e", "stepId": "asyncStep"},
             "input": {"orderId": "o-e2e-async"}}
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
    try:  # switched off: Lambda hands the asynchronous event to the on-failure destination (the DLQ)
        assert lam.invoke(FunctionName=function, InvocationType="Event",
                          Payload=json.dumps(event).encode())["StatusCode"] == 202
        letter = eventually(lambda: next((x for x in dead_letters.show(limit=50) if execution in x.body), None),
                            60, "the asynchronous invocation record in the dead-letter queue", every=2)
    finally:
        lam.delete_function_concurrency(FunctionName=function)  # the fix
    assert letter.source == "lambda" and letter.target is not None and function in letter.target
    assert letter.payload()["requestPayload"] == event
    report = dead_letters.redrive(message_ids=[letter.messageId])
    assert report.redriven == 1, report.outcomes
    store = StateStore(stack.state_table_name)
    step = eventually(lambda: next((s for s in store.list_steps(execution) if s.status == "SUCCEEDED"), None),
                      60, "the redriven invocation to run")
    assert step.stepId == "asyncStep" and step.output["orderId"] == "o-e2e-async"
    assert not any(execution in x.body for x in dead_letters.show(limit=50))


def test_a_schedule_step_starts_a_workflow_when_the_local_clock_moves(
    stack: StackOutputs, scheduler: TaskScheduler, local_cloud: Any, repo_root: Path,
) -> None:
    local_clock(repo_root).reset()
    try:
        execution = start(stack, "order-saga", {"orderId": "o-e2e-later"})
        description = finished(execution)
        assert description["status"] == "SUCCEEDED", description.get("cause")
        steps = {s.stepId: s for s in StateStore(stack.state_table_name).list_steps(execution)}
        output = steps["followUp"].output
        assert output["route"] == "at" and output["type"] == "workflow:order-follow-up"
        assert scheduler.get_task_status(output["taskId"]).status == TaskStatus.DELAYED
        advance_clock("3d", project_root=repo_root)
        advance_clock("2m", project_root=repo_root)
        poll = None if local_cloud.embedded else (lambda: tick(repo_root))

        def follow_up() -> str | None:
            if poll is not None:
                poll()
            record = scheduler.get_task_status(output["taskId"])
            return record.executionArn

        started = eventually(follow_up, 120, "the follow-up workflow to start")
        assert started.endswith(f":{output['taskId']}")
        child = finished(started)
        assert child["status"] == "SUCCEEDED", child.get("cause")
        assert json.loads(child["input"]) == {"orderId": "o-e2e-later"}
    finally:
        local_clock(repo_root).reset()


def test_redrive_of_a_failed_execution(stack: StackOutputs, capsys: pytest.CaptureFixture[str]) -> None:
    execution = start(stack, "order-saga", {"orderId": "o-e2e-redrive", "failAt": "charge"})
    assert finished(execution)["status"] == "FAILED"
    with pytest.raises(RedriveNotSupported):  # LocalStack 2026.3 answers RedriveExecution with 501
        redrive_execution(execution)
    assert main(["redrive", execution]) == 1
    assert "--restart" in capsys.readouterr().err
    assert main(["redrive", execution, "--restart", "--stack", stack.stack_name, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "restarted" and result["redriveOf"] == execution
    again = finished(result["executionArn"])
    assert again["status"] == "FAILED" and json.loads(again["input"])["orderId"] == "o-e2e-redrive"
    store = StateStore(stack.state_table_name)
    record = store.get_execution(result["executionArn"])
    assert record is not None and record.metadata["redriveOf"] == execution
    steps = {s.stepId: s.status for s in store.list_steps(result["executionArn"])}
    # reserve was compensated in the failed run, so it runs (and is compensated) again; charge fails again
    assert steps["reserve"] == "SUCCEEDED" and steps["reserve.compensate"] == "SUCCEEDED"
    assert steps["charge"] == "FAILED"
