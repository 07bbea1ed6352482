"""The engine API end to end on the embedded LocalStack: the registry a deploy fills, idempotent starts, status,
query, ls, terminate, EventBridge commands and their answer events, duplicate trigger deliveries, the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coafi import aws
from coafi.cli.main import main as coafi_main
from coafi.deploy import StackOutputs
from coafi.engine.client import WorkflowClient
from coafi.engine.commands import COMMAND_FAILED, COMMAND_SUCCEEDED, ENGINE_SOURCE
from coafi.engine.errors import IdempotencyConflict, WorkflowNotRegistered
from coafi.executions import find_execution, publish_event

pytestmark = pytest.mark.localstack

TIMEOUT = 240.0


def request(**extra: Any) -> dict[str, Any]:
    return {
        "contentType": "article",
        "parameters": {"topic": "engine api", "lengthWords": 40},
        "metadata": {"requestId": f"e2e-engine-{uuid.uuid4()}", "userId": "tester", "role": "editor"},
        **extra,
    }


def executions_with(state_machine_arn: str, marker: str) -> list[str]:
    """Every execution of the state machine whose input contains ``marker``."""
    sfn = aws.client("stepfunctions")
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            if marker in sfn.describe_execution(executionArn=execution["executionArn"]).get("input", ""):
                found.append(str(execution["executionArn"]))
    return found


@pytest.fixture(scope="module")
def client(stack: StackOutputs) -> WorkflowClient:
    return WorkflowClient.from_stack(stack.stack_name)


@pytest.fixture(scope="module")
def answers(stack: StackOutputs) -> Iterator[Callable[[str], dict[str, Any]]]:
    """The engine's answer events (CommandSucceeded / CommandFailed), caught by a queue of the test's own."""
    sqs, events = aws.client("sqs"), aws.client("events")
    name = f"e2e-engine-answers-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=stack.event_bus_name,
                    EventPattern=json.dumps({"source": [ENGINE_SOURCE]}))
    events.put_targets(Rule=name, EventBusName=stack.event_bus_name, Targets=[{"Id": "answers", "Arn": queue_arn}])
    seen: dict[str, dict[str, Any]] = {}

    def wait_for(correlation_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while correlation_id not in seen:
            assert time.monotonic() < deadline, f"no answer event for {correlation_id}"
            for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1).get("Messages", []):
                event = json.loads(message["Body"])
                seen[str(event["detail"].get("correlationId"))] = event
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return seen[correlation_id]

    yield wait_for
    events.remove_targets(Rule=name, EventBusName=stack.event_bus_name, Ids=["answers"])
    events.delete_rule(Name=name, EventBusName=stack.event_bus_name)
    sqs.delete_queue(QueueUrl=queue_url)


def test_the_deploy_registers_every_workflow_with_a_published_live_version(
        stack: StackOutputs, client: WorkflowClient) -> None:
    registered = {w.workflowId: w for w in client.list_workflows()}
    assert set(stack.workflow_arns) <= set(registered)
    for workflow_id, machine_arn in stack.workflow_arns.items():
        live = registered[workflow_id].live()
        assert live is not None and live.version == "1.0.0" and live.source == f"stack:{stack.stack_name}"
        assert live.stateMachineArn.startswith(machine_arn + ":")  # a published version of the deployed machine
    with pytest.raises(WorkflowNotRegistered, match="'no-such-workflow' is not registered"):
        client.start_workflow("no-such-workflow", {})


def test_idempotent_start_status_query_history_and_ls(client: WorkflowClient) -> None:
    key = f"e2e-{uuid.uuid4()}"
    body = request()
    first = client.start_workflow("content-generation", body, idempotency_key=key)
    again = client.start_workflow("content-generation", body, idempotency_key=key)
    assert first.started and not again.started
    assert again.executionId == first.executionId
    with pytest.raises(IdempotencyConflict, match=key):
        client.start_workflow("content-generation", {**body, "contentType": "summary"}, idempotency_key=key)

    final = client.wait(first.executionId, timeout=TIMEOUT, poll_seconds=0.5)
    assert final.status == "SUCCEEDED", final.error
    assert client.get_workflow_status(first.executionId).status == "SUCCEEDED"
    assert client.query_workflow(first.executionId, "status") == "SUCCEEDED"
    assert client.query_workflow(first.executionId, "input.metadata.requestId") == body["metadata"]["requestId"]
    assert client.query_workflow(first.executionId, "steps.storeContent.output.contentId")
    types = [e.type for e in client.get_execution_history(first.executionId)]
    assert types[0] == "WORKFLOW_STARTED" and types[-1] == "WORKFLOW_SUCCEEDED"

    deadline = time.monotonic() + 30
    while True:  # the indexes are eventually consistent
        page = client.find_executions(workflow_id="content-generation", status="SUCCEEDED", limit=50)
        if first.executionId in [e.executionId for e in page.executions] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert first.executionId in [e.executionId for e in page.executions]


def test_terminate_stops_a_waiting_execution_and_records_the_reason(client: WorkflowClient) -> None:
    run = client.start_workflow("content-campaign", request(launch={"immediate": False, "embargoSeconds": 900}))
    for update in client.watch(run.executionId, poll_seconds=0.5, timeout=TIMEOUT):
        if update.kind == "step" and update.step is not None and update.step.stepId == "embargo":
            break
    assert client.query_workflow(run.executionId, "currentSteps") == ["embargo"]
    state = client.terminate_workflow(run.executionId, "campaign cancelled by e2e")
    assert state.status == "ABORTED"
    assert state.error is not None and state.error.type == "Terminated"
    assert state.error.message == "campaign cancelled by e2e"
    assert state.currentSteps == []
    described = aws.client("stepfunctions").describe_execution(executionArn=run.executionId)
    assert described["status"] == "ABORTED"
    last = client.get_execution_history(run.executionId)
    aborted = [e for e in last if e.type == "WORKFLOW_ABORTED"]
    assert len(aborted) == 1 and aborted[0].details["reason"] == "campaign cancelled by e2e"


def test_start_workflow_command_on_the_bus_answers_with_the_execution(
        stack: StackOutputs, client: WorkflowClient, answers: Callable[[str], dict[str, Any]]) -> None:
    correlation = f"cmd-{uuid.uuid4()}"
    body = request()
    publish_event(stack.event_bus_name, "e2e.engine", "StartWorkflow",
                  {"workflowId": "content-generation", "input": body, "correlationId": correlation})
    answer = answers(correlation)
    assert answer["detail-type"] == COMMAND_SUCCEEDED, answer["detail"]
    execution = answer["detail"]["result"]["executionId"]
    assert client.wait(execution, timeout=TIMEOUT, poll_seconds=0.5).status == "SUCCEEDED"
    assert client.query_workflow(execution, "input") == body


def test_bad_commands_are_answered_with_command_failed(
        stack: StackOutputs, answers: Callable[[str], dict[str, Any]]) -> None:
    unknown, malformed = f"bad-{uuid.uuid4()}", f"bad-{uuid.uuid4()}"
    publish_event(stack.event_bus_name, "e2e.engine", "StartWorkflow",
                  {"workflowId": "no-such-workflow", "correlationId": unknown})
    publish_event(stack.event_bus_name, "e2e.engine", "TerminateWorkflow",
                  {"executionId": "arn:aws:states:us-east-1:000000000000:execution:x:y", "correlationId": malformed})
    failed = answers(unknown)
    assert failed["detail-type"] == COMMAND_FAILED
    assert failed["detail"]["command"] == "StartWorkflow"
    assert failed["detail"]["error"]["type"] == "WorkflowNotRegistered"
    assert failed["detail"]["error"]["field"] == "detail.workflowId"
    missing = answers(malformed)
    assert missing["detail-type"] == COMMAND_FAILED
    assert missing["detail"]["error"]["field"] == "detail.reason"


def test_a_duplicate_delivery_of_a_trigger_event_starts_one_execution(stack: StackOutputs,
                                                                      client: WorkflowClient) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    body = request()
    publish_event(stack.event_bus_name, "coafi.content", "ContentRequested", body)
    marker = body["metadata"]["requestId"]
    arn = find_execution(stack.workflow_arn("content-generation"), marker, since=since)
    original = json.loads(aws.client("stepfunctions").describe_execution(executionArn=arn)["input"])
    assert original["id"] and original["detail"] == body  # the whole event is the input, as before

    # EventBridge delivers at least once: the same event (same id) reaching the function again.
    outputs = {o["OutputKey"]: o["OutputValue"] for o in aws.client("cloudformation").describe_stacks(
        StackName=stack.stack_name)["Stacks"][0]["Outputs"]}
    redelivery = {"coafiTrigger": {"workflowId": "content-generation"}, "event": original}
    response = aws.client("lambda").invoke(FunctionName=outputs["ApiFunctionName"],
                                           Payload=json.dumps(redelivery).encode())
    outcome = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, outcome
    assert outcome["result"]["executionId"] == arn and outcome["result"]["started"] is False
    assert executions_with(stack.workflow_arn("content-generation"), marker) == [arn]
    assert client.wait(arn, timeout=TIMEOUT, poll_seconds=0.5).status == "SUCCEEDED"


def test_the_cli_speaks_json(stack: StackOutputs, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, Any]:
        code = coafi_main([*argv, "--stack", stack.stack_name, "--json"])
        return code, json.loads(capsys.readouterr().out)

    key = f"cli-{uuid.uuid4()}"
    body = json.dumps(request())
    code, started = run("start", "content-generation", "--input", body, "--idempotency-key", key, "--wait")
    assert code == 0 and started["state"]["status"] == "SUCCEEDED"
    code, again = run("start", "content-generation", "--input", body, "--idempotency-key", key)
    assert code == 0 and again["executionId"] == started["executionId"] and again["started"] is False
    execution = started["executionId"]
    code, status = run("status", execution)
    assert code == 0 and status["status"] == "SUCCEEDED" and len(status["steps"]) == 6
    code, answer = run("query", execution, "steps.validateParameters.status")
    assert code == 0 and answer == "SUCCEEDED"
    code, history = run("history", execution)
    assert code == 0 and history[-1]["type"] == "WORKFLOW_SUCCEEDED"
    code, listing = run("ls", "--workflow", "content-generation", "--limit", "5")
    assert code == 0 and len(listing["executions"]) <= 5
    code, registry = run("workflows", "ls")
    assert code == 0 and {"content-generation", "content-campaign"} <= {w["workflowId"] for w in registry}
    code, error = run("query", execution, "nonsense")
    assert code == 1 and error["error"]["type"] == "InvalidQuery" and error["error"]["field"] == "name"


def test_signal_and_complete_task_commands_on_the_bus_finish_a_waiting_execution(
        stack: StackOutputs, client: WorkflowClient, answers: Callable[[str], dict[str, Any]]) -> None:
    # content-approval: a callback step (review) then a signal step (publish), both completed by commands
    execution = client.start_workflow("content-approval", {"draft": f"d-{uuid.uuid4()}"}).executionId
    deadline = time.monotonic() + TIMEOUT
    while client.waits.store.get_wait(execution, "review") is None:
        assert time.monotonic() < deadline, "the review step never started to wait"
        time.sleep(0.5)
    signal, complete = f"sig-{uuid.uuid4()}", f"done-{uuid.uuid4()}"
    publish_event(stack.event_bus_name, "e2e.engine", "SignalWorkflow",
                  {"executionId": execution, "name": "publish", "payload": {"channel": "bus"},
                   "correlationId": signal})
    assert answers(signal)["detail"]["result"]["status"] == "BUFFERED"  # publish does not wait yet
    publish_event(stack.event_bus_name, "e2e.engine", "CompleteTask",
                  {"executionId": execution, "stepId": "review", "result": {"approved": True},
                   "correlationId": complete})
    answer = answers(complete)
    assert answer["detail-type"] == COMMAND_SUCCEEDED, answer["detail"]
    state = client.wait(execution, timeout=TIMEOUT, poll_seconds=0.5)
    assert state.status == "SUCCEEDED"
    assert client.query_workflow(execution, "steps.publish.output") == {"channel": "bus"}
