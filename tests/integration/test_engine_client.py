"""The engine API in process: moto runs the compiled state machines with the project's real handlers.

Idempotent starts (same key -> same execution; another input -> an error), named and live versions, unknown
workflows, terminate (stops the execution and records the reason), queries, ls pagination, the API function's
commands and triggers (duplicate deliveries start one execution)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.definitions import WorkflowDefinition, load_definition, validate_definition
from coafi.engine.client import MAX_INPUT_BYTES, WorkflowClient
from coafi.engine.commands import (
    COMMAND_FAILED,
    COMMAND_SUCCEEDED,
    COMMANDS,
    ENGINE_SOURCE,
    event_publisher,
    handle,
)
from coafi.engine.errors import (
    ExecutionNotRunning,
    IdempotencyConflict,
    InputTooLarge,
    InvalidQuery,
    UnknownExecution,
    VersionNotRegistered,
    WorkflowNotRegistered,
)
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import BUS, TABLE

ROOT = Path(__file__).resolve().parents[2]
WAITER = {
    "id": "waiter", "name": "Waiter", "version": "2.0.0",
    "steps": [{"id": "hold", "type": "wait", "parameters": {"seconds": "$.input.seconds"}}],
}


def request(**extra: Any) -> dict[str, Any]:
    return {"contentType": "article", "parameters": {"topic": "engine", "lengthWords": 60},
            "metadata": {"requestId": f"r-{uuid.uuid4()}", "userId": "u", "role": "editor"}, **extra}


def waiter(seconds: int) -> dict[str, Any]:
    return {"seconds": seconds, "marker": f"w-{uuid.uuid4()}"}


@pytest.fixture(scope="module")
def definitions() -> list[WorkflowDefinition]:
    return [load_definition(ROOT / "statemachines" / "content-generation.yaml"),
            validate_definition(WAITER, "waiter.yaml", actions=set())]


@pytest.fixture(scope="module")
def cloud(definitions: list[WorkflowDefinition]) -> Iterator[InProcessCloud]:
    """One moto cloud for the module (a start takes seconds on a busy machine); tests tell their executions
    apart by a request id of their own."""
    with InProcessCloud(ROOT, definitions=definitions) as cloud:
        yield cloud


@pytest.fixture
def client(cloud: InProcessCloud) -> WorkflowClient:
    client = WorkflowClient(TABLE, event_bus_name=BUS)
    for workflow_id, arn in cloud.state_machines.items():
        client.register_workflow(workflow_id, "1.0.0", arn, source="test")
    return client


def executions(cloud: InProcessCloud, workflow_id: str, body: dict[str, Any]) -> list[str]:
    """The executions of ``workflow_id`` started with ``body``'s marker (its request id or waiter marker)."""
    marker = body["metadata"]["requestId"] if "metadata" in body else body["marker"]
    sfn = aws.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=cloud.state_machines[workflow_id])["executions"]
    return [e["executionArn"] for e in listed
            if marker in sfn.describe_execution(executionArn=e["executionArn"]).get("input", "")]


def wait_for_step(client: WorkflowClient, execution: str, step_id: str) -> None:
    for update in client.watch(execution, poll_seconds=0.05, timeout=120):
        if update.kind == "step" and update.step is not None and update.step.stepId == step_id:
            return
    raise AssertionError(f"{execution} ended before step {step_id} started")


# -- start ---------------------------------------------------------------------------------------------------
def test_the_same_idempotency_key_returns_the_same_execution(cloud: InProcessCloud, client: WorkflowClient) -> None:
    body = request()
    first = client.start_workflow("content-generation", body, idempotency_key="order-42")
    again = client.start_workflow("content-generation", body, idempotency_key="order-42")
    assert (first.started, again.started) == (True, False)
    assert again.executionId == first.executionId and first.workflowVersion == "1.0.0"
    assert len(executions(cloud, "content-generation", body)) == 1
    assert client.wait(first.executionId, timeout=120, poll_seconds=0.05).status == "SUCCEEDED"
    # after the end as well: still the same execution, never a second one
    assert client.start_workflow("content-generation", body, idempotency_key="order-42").executionId \
        == first.executionId
    assert len(executions(cloud, "content-generation", body)) == 1


def test_the_same_key_with_another_input_is_an_error_not_a_second_run(cloud: InProcessCloud,
                                                                      client: WorkflowClient) -> None:
    body = request()
    first = client.start_workflow("content-generation", body, idempotency_key="order-43")
    with pytest.raises(IdempotencyConflict, match=r"'order-43' .* already started .* different input") as caught:
        client.start_workflow("content-generation", {**body, "contentType": "summary"}, idempotency_key="order-43")
    assert caught.value.execution == first.executionId and caught.value.field == "idempotencyKey"
    assert len(executions(cloud, "content-generation", body)) == 1
    # key order does not make an input different
    same = json.loads(json.dumps(body), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert client.start_workflow("content-generation", same, idempotency_key="order-43").executionId \
        == first.executionId


def test_keys_are_scoped_per_workflow_and_without_a_key_every_start_is_new(cloud: InProcessCloud,
                                                                           client: WorkflowClient) -> None:
    body = request()
    a = client.start_workflow("content-generation", body)
    client.wait(a.executionId, timeout=120, poll_seconds=0.05)
    b = client.start_workflow("content-generation", body)
    assert a.executionId != b.executionId
    client.wait(b.executionId, timeout=120, poll_seconds=0.05)
    # one execution at a time: moto's interpreter threads sometimes hang when executions overlap
    w = client.start_workflow("waiter", waiter(0), idempotency_key="shared")
    client.wait(w.executionId, timeout=120, poll_seconds=0.05)
    g = client.start_workflow("content-generation", request(), idempotency_key="shared")
    assert w.executionId != g.executionId
    client.wait(g.executionId, timeout=120, poll_seconds=0.05)


def test_unknown_workflows_versions_and_oversized_inputs_are_refused(cloud: InProcessCloud,
                                                                      client: WorkflowClient) -> None:
    body = request()
    with pytest.raises(WorkflowNotRegistered, match=r"'nope' is not registered .*content-generation, waiter"):
        client.start_workflow("nope", body)
    with pytest.raises(VersionNotRegistered, match=r"no registered version '7\.0\.0' .*registered: .*1\.0\.0"):
        client.start_workflow("content-generation", body, version="7.0.0")
    with pytest.raises(InputTooLarge, match=f"at most {MAX_INPUT_BYTES}"):
        client.start_workflow("content-generation", {**body, "blob": "x" * MAX_INPUT_BYTES})
    assert executions(cloud, "content-generation", body) == []


def test_a_named_version_starts_what_it_was_registered_with(cloud: InProcessCloud, client: WorkflowClient) -> None:
    client.register_workflow("content-generation", "0.9.0", cloud.state_machines["waiter"], make_live=False)
    # one execution at a time: moto's backends are not safe for concurrent executions' writes
    run = client.start_workflow("content-generation", waiter(0), version="0.9.0")
    assert run.stateMachineArn == cloud.state_machines["waiter"] and run.workflowVersion == "0.9.0"
    assert client.wait(run.executionId, timeout=120, poll_seconds=0.05).workflowId == "waiter"
    live = client.start_workflow("content-generation", request())
    assert live.stateMachineArn == cloud.state_machines["content-generation"]
    client.wait(live.executionId, timeout=120, poll_seconds=0.05)
    body = waiter(0)
    pinned = client.start_workflow("content-generation", body, idempotency_key="v", version="0.9.0")
    with pytest.raises(IdempotencyConflict, match="different version"):
        client.start_workflow("content-generation", body, idempotency_key="v", version="1.0.0")
    client.wait(pinned.executionId, timeout=120, poll_seconds=0.05)


# -- status, terminate, query --------------------------------------------------------------------------------
def stepfunctions_status(execution_arn: str, timeout: float = 10.0) -> str:
    """The execution's status once it is no longer RUNNING. On AWS a StopExecution that returned has stopped it;
    moto's interpreter thread takes a moment to notice."""
    deadline = time.monotonic() + timeout
    while True:
        status = str(aws.client("stepfunctions").describe_execution(executionArn=execution_arn)["status"])
        if status != "RUNNING" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_terminate_stops_the_execution_and_records_the_reason(cloud: InProcessCloud, client: WorkflowClient) -> None:
    run = client.start_workflow("waiter", waiter(600))
    wait_for_step(client, run.executionId, "hold")
    assert client.query_workflow(run.executionId, "currentSteps") == ["hold"]
    state = client.terminate_workflow(run.executionId, "customer cancelled")
    assert state.status == "ABORTED" and state.endTime is not None
    assert state.error is not None and (state.error.type, state.error.message) == ("Terminated", "customer cancelled")
    assert state.metadata["termination"]["reason"] == "customer cancelled"
    assert state.currentSteps == [] and state.steps[-1].status == "FAILED"
    assert stepfunctions_status(run.executionId) == "ABORTED"
    aborted = [e for e in client.get_execution_history(run.executionId) if e.type == "WORKFLOW_ABORTED"]
    assert len(aborted) == 1 and aborted[0].details["reason"] == "customer cancelled"
    assert client.get_workflow_status(run.executionId).status == "ABORTED"
    with pytest.raises(ExecutionNotRunning, match="already ended \\(ABORTED\\)"):
        client.terminate_workflow(run.executionId, "again")
    with pytest.raises(ValueError, match="needs a reason"):
        client.terminate_workflow(run.executionId, "  ")


def test_an_execution_stopped_outside_coafi_is_recorded_by_status(cloud: InProcessCloud,
                                                                   client: WorkflowClient) -> None:
    run = client.start_workflow("waiter", waiter(600))
    wait_for_step(client, run.executionId, "hold")
    aws.client("stepfunctions").stop_execution(executionArn=run.executionId, error="Ops", cause="console")
    deadline = time.monotonic() + 30  # moto stops the execution's thread asynchronously
    while (state := client.get_workflow_status(run.executionId)).status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.status == "ABORTED" and state.error is not None  # moto's describe has no error/cause
    assert client.store.get_execution(run.executionId).status == "ABORTED"  # type: ignore[union-attr]


def test_query_answers_from_the_recorded_state(cloud: InProcessCloud, client: WorkflowClient) -> None:
    run = client.start_workflow("content-generation", request())
    client.wait(run.executionId, timeout=120, poll_seconds=0.05)
    client.store.update_state(run.executionId, {"variables": {"approval": {"by": "ana"}}})
    before = client.store.get_execution(run.executionId)
    q = client.query_workflow
    assert q(run.executionId, "status") == "SUCCEEDED"
    assert q(run.executionId, "workflowId") == "content-generation"
    assert q(run.executionId, "variables.approval.by") == "ana"
    assert q(run.executionId, "input.parameters.topic") == "engine"
    assert q(run.executionId, "trigger.type") == "direct"
    assert q(run.executionId, "steps")["storeContent"] == "SUCCEEDED"
    assert q(run.executionId, "steps.storeContent.output.contentId")
    assert q(run.executionId, "output.steps.validateParameters.output") is not None
    assert q(run.executionId, "currentSteps") == []
    for bad, message in [("nonsense", "not a query name"), ("variables.missing", "nothing at 'missing'"),
                         ("steps.nope", "no record of step 'nope'"), ("status.x", "no parts"), ("", "empty")]:
        with pytest.raises(InvalidQuery, match=message):
            q(run.executionId, bad)
    assert client.store.get_execution(run.executionId) == before  # nothing was written
    with pytest.raises(UnknownExecution):
        q("arn:aws:states:us-east-1:123456789012:execution:coafi-waiter:none", "status")


def test_ls_pages_through_the_executions(cloud: InProcessCloud, client: WorkflowClient) -> None:
    # start times are recorded to the millisecond: start after a whole second, so none lands before ``since``
    since = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (since - datetime.now(UTC)).total_seconds()))
    started = []
    for _ in range(5):  # one at a time: moto's interpreter threads sometimes hang when executions overlap
        started.append(client.start_workflow("waiter", waiter(0)).executionId)
        client.wait(started[-1], timeout=120, poll_seconds=0.05)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = client.find_executions(workflow_id="waiter", status="SUCCEEDED", start_after=since, limit=2,
                                      next_token=token)
        seen.extend(e.executionId for e in page.executions)
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert sorted(seen) == sorted(started) and pages == 3


# -- the API function's dispatch -----------------------------------------------------------------------------
class Bus:
    """Collects what the API function publishes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.events.append((detail_type, detail))


def command(detail_type: str, detail: Any, event_id: str = "evt-1") -> dict[str, Any]:
    return {"id": event_id, "detail-type": detail_type, "source": "tests", "detail": detail}


def test_start_and_terminate_commands_answer_with_events(cloud: InProcessCloud, client: WorkflowClient) -> None:
    bus = Bus()
    body = waiter(600)
    start = command("StartWorkflow", {"workflowId": "waiter", "input": body, "correlationId": "c-1"})
    outcome = handle(start, client, bus, cloud.state_machines)
    assert outcome.ok
    assert bus.events[0][0] == COMMAND_SUCCEEDED and bus.events[0][1]["correlationId"] == "c-1"
    execution = outcome.result["executionId"]
    # moto's interpreter races a second StartExecution of a name whose first Task is still starting (a deepcopy
    # of the execution's context while it changes): the redelivery comes once the execution waits, as it would
    wait_for_step(client, execution, "hold")
    # a retried delivery of the same command event (same id) starts nothing new
    assert handle(start, client, bus, cloud.state_machines).result["executionId"] == execution
    assert len(executions(cloud, "waiter", body)) == 1
    stop = command("TerminateWorkflow", {"executionId": execution, "reason": "by command"}, "evt-2")
    assert handle(stop, client, bus, cloud.state_machines).result == {"executionId": execution, "status": "ABORTED"}
    assert client.query_workflow(execution, "error.message") == "by command"


@pytest.mark.parametrize(("event", "error_type", "field"), [
    (command("StartWorkflow", {"workflowId": "nope"}), "WorkflowNotRegistered", "detail.workflowId"),
    (command("StartWorkflow", {"workflowId": "Bad Id!"}), "CommandRejected", "detail.workflowId"),
    (command("StartWorkflow", {"workflowId": "waiter", "extra": 1}), "CommandRejected", "detail.extra"),
    (command("StartWorkflow", ["not", "an", "object"]), "CommandRejected", "detail"),
    (command("StartWorkflow", {"workflowId": "waiter", "input": "x" * (300 * 1024)}), "CommandRejected", "detail"),
    (command("TerminateWorkflow", {"executionId": "arn:x"}), "CommandRejected", "detail.reason"),
    (command("TerminateWorkflow", {"executionId": "arn:aws:states:us-east-1:123456789012:execution:a:b",
                                   "reason": "r"}), "UnknownExecution", "detail.executionId"),
    (command("PauseWorkflow", {}), "CommandRejected", "detail-type"),
])
def test_bad_commands_publish_command_failed_and_are_not_retried(
        cloud: InProcessCloud, client: WorkflowClient, event: dict[str, Any], error_type: str, field: str) -> None:
    bus = Bus()
    outcome = handle(event, client, bus, cloud.state_machines)  # returns: Lambda does not retry it
    assert not outcome.ok
    [(detail_type, detail)] = bus.events
    assert detail_type == COMMAND_FAILED
    assert detail["command"] == event["detail-type"] and detail["commandId"] == "evt-1"
    assert detail["error"]["type"] == error_type and detail["error"]["field"] == field
    assert detail["error"]["message"]
    assert not bus.events[0][1].get("result")


def test_a_duplicate_trigger_delivery_starts_one_execution(cloud: InProcessCloud, client: WorkflowClient) -> None:
    event: dict[str, Any] = {"version": "0", "id": "6f1c-duplicate", "detail-type": "ContentRequested",
                             "source": "coafi.content", "time": "2026-11-25T10:00:00Z", "detail": request()}
    delivery = {"coafiTrigger": {"workflowId": "content-generation"}, "event": event}
    first = handle(delivery, client, Bus(), cloud.state_machines)
    second = handle(delivery, client, Bus(), cloud.state_machines)
    assert first.result["started"] is True and second.result["started"] is False
    assert first.result["executionId"] == second.result["executionId"]
    assert len(executions(cloud, "content-generation", event["detail"])) == 1
    state = client.wait(first.result["executionId"], timeout=120, poll_seconds=0.05)
    assert state.status == "SUCCEEDED"
    assert state.input["input"] == event["detail"] and state.input["trigger"]["eventId"] == "6f1c-duplicate"
    other = {**delivery, "event": {**event, "id": "another-event"}}
    another = handle(other, client, Bus(), cloud.state_machines).result["executionId"]
    assert another != first.result["executionId"]
    client.wait(another, timeout=120, poll_seconds=0.05)
    with pytest.raises(LookupError, match="does not deploy"):
        handle({**delivery, "coafiTrigger": {"workflowId": "ghost"}}, client, Bus(), cloud.state_machines)


def test_the_command_registry_names_the_rule_pattern() -> None:
    assert set(COMMANDS) >= {"StartWorkflow", "TerminateWorkflow"}


def test_watch_reports_each_step_then_the_end(cloud: InProcessCloud, client: WorkflowClient) -> None:
    run = client.start_workflow("content-generation", request())
    updates = list(client.watch(run.executionId, poll_seconds=0.05, timeout=120))
    assert updates[-1].kind == "execution" and updates[-1].status == "SUCCEEDED"
    finished = [u.step.stepId for u in updates if u.step is not None and u.status == "SUCCEEDED"]
    assert finished == ["validateParameters", "checkPermissions", "generateContent", "storeContent",
                        "updateRegistry", "notifySubscribers"]


def test_the_publisher_puts_answers_on_the_apps_bus(cloud: InProcessCloud, client: WorkflowClient) -> None:
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="engine-answers")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="answers", EventBusName=BUS, EventPattern=json.dumps({"source": [ENGINE_SOURCE]}))
    events.put_targets(Rule="answers", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
    handle(command("StartWorkflow", {"workflowId": "nope", "correlationId": "c-9"}), client, event_publisher(BUS),
           cloud.state_machines)
    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    answer = json.loads(message["Body"])
    assert (answer["source"], answer["detail-type"]) == (ENGINE_SOURCE, COMMAND_FAILED)
    assert answer["detail"]["correlationId"] == "c-9"
    with pytest.raises(RuntimeError, match="COAFI_EVENT_BUS_NAME"):
        event_publisher(None)(COMMAND_FAILED, {})
