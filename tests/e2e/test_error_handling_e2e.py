"""The error handler end to end on the embedded LocalStack (the resilience-demo workflow and its call-dependency
action, deployed with the app): a transient failure retried by the error policy until the step succeeds, a
circuit breaker that opens and then fails fast without calling the dependency, and the Escalation event of a
crossed threshold delivered from the app's bus (to a queue of the test's, and through the escalation topic)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from coafi import aws
from coafi.deploy import StackOutputs
from coafi.executions import wait_for_execution
from coafi.resilience.circuit import CircuitBreaker, CircuitState
from coafi.resilience.escalation import DETAIL_TYPE, SOURCE
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

WORKFLOW = "resilience-demo"
STEP = "callDependency"


def run(stack: StackOutputs, workflow_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = aws.client("stepfunctions").start_execution(
        stateMachineArn=stack.workflow_arn(WORKFLOW), name=f"e2e-{uuid.uuid4()}", input=json.dumps(workflow_input),
    )["executionArn"]
    return arn, wait_for_execution(arn, StateStore(stack.state_table_name), timeout=180)


def task_failures(arn: str) -> list[str]:
    """The error of each failed attempt of the step, from Step Functions' own history."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]


def dependency_calls(stack: StackOutputs, dependency: str) -> int:
    item = aws.client("dynamodb").get_item(
        TableName=stack.state_table_name, ConsistentRead=True,
        Key={"PK": {"S": f"DEMO#DEPENDENCY#{dependency}"}, "SK": {"S": "CALLS"}},
    ).get("Item")
    return int(item["calls"]["N"]) if item else 0


def receive(queue_url: str, wanted: int, timeout: float = 60) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < wanted and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                                           ).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture(scope="module")
def escalations(stack: StackOutputs) -> Iterator[tuple[str, str]]:
    """Two queues of the test's: one behind a rule on the app's bus, one subscribed to the escalation topic."""
    sqs, events, sns = aws.client("sqs"), aws.client("events"), aws.client("sns")
    suffix = uuid.uuid4().hex[:8]
    from_bus = sqs.create_queue(QueueName=f"e2e-escalations-bus-{suffix}")["QueueUrl"]
    from_topic = sqs.create_queue(QueueName=f"e2e-escalations-topic-{suffix}")["QueueUrl"]

    def arn(url: str) -> str:
        return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    rule = f"e2e-escalations-{suffix}"
    events.put_rule(Name=rule, EventBusName=stack.event_bus_name,
                    EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}))
    events.put_targets(Rule=rule, EventBusName=stack.event_bus_name, Targets=[{"Id": "queue", "Arn": arn(from_bus)}])
    outputs = aws.client("cloudformation").describe_stacks(StackName=stack.stack_name)["Stacks"][0]["Outputs"]
    topic = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "EscalationTopicArn")
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(from_topic),
                                 Attributes={"RawMessageDelivery": "true"})["SubscriptionArn"]
    try:
        yield from_bus, from_topic
    finally:
        sns.unsubscribe(SubscriptionArn=subscription)
        events.remove_targets(Rule=rule, EventBusName=stack.event_bus_name, Ids=["queue"])
        events.delete_rule(Name=rule, EventBusName=stack.event_bus_name)
        sqs.delete_queue(QueueUrl=from_bus)
        sqs.delete_queue(QueueUrl=from_topic)


def test_a_step_failing_twice_transiently_then_succeeding_is_retried_by_its_policy(
        stack: StackOutputs, escalations: tuple[str, str]) -> None:
    dependency = f"flaky-{uuid.uuid4().hex[:12]}"
    arn, description = run(stack, {"dependency": dependency, "key": "order-1", "failTimes": 2})
    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert task_failures(arn) == ["DependencyUnavailable", "DependencyUnavailable"]  # the history shows the retries
    (step,) = StateStore(stack.state_table_name).list_steps(arn)
    assert step.stepId == STEP and step.status == "SUCCEEDED" and step.attempts == 3
    assert step.output == {"dependency": dependency, "calls": 3, "totalCalls": 3}

    # the second failed attempt crossed the policy's escalation threshold (attempts: 2): one Escalation event
    from_bus, from_topic = escalations
    (event,) = [e for e in receive(from_bus, 1) if e["detail"]["executionId"] == arn]
    assert event["source"] == SOURCE and event["detail-type"] == DETAIL_TYPE
    detail = event["detail"]
    assert detail["workflowId"] == WORKFLOW and detail["stepId"] == STEP and detail["action"] == "call-dependency"
    assert detail["policyId"] == "transient-retry" and detail["attempts"] == 2 and detail["threshold"] == 2
    assert detail["error"]["type"] == "DependencyUnavailable" and detail["error"]["category"] == "transient"
    published = [e for e in receive(from_topic, 1) if e.get("detail", {}).get("executionId") == arn]
    assert [e["detail"]["policyId"] for e in published] == ["transient-retry"]  # also through the SNS topic


def test_a_circuit_opens_after_repeated_failures_and_later_calls_fail_fast(stack: StackOutputs) -> None:
    dependency = f"down-{uuid.uuid4().hex[:12]}"
    first, description = run(stack, {"dependency": dependency, "down": True})
    assert description["status"] == "FAILED"
    # three attempts (first + maxRetries 2) reached the dependency; the third failure opened the circuit
    assert task_failures(first) == ["DependencyUnavailable"] * 3
    assert dependency_calls(stack, dependency) == 3
    circuit = CircuitBreaker(dependency, table_name=stack.state_table_name)
    assert circuit.status().state == CircuitState.OPEN

    second, description = run(stack, {"dependency": dependency, "down": True})
    assert description["status"] == "FAILED" and description.get("error") == "CircuitOpen"
    assert task_failures(second) == ["CircuitOpen"] * 3  # retried (transient), each failing fast
    assert dependency_calls(stack, dependency) == 3  # the dependency was not called again
    (step,) = StateStore(stack.state_table_name).list_steps(second)
    assert step.status == "FAILED" and step.error is not None and step.error.type == "CircuitOpen"


def test_the_deployment_itself_registers_the_error_policies(stack: StackOutputs) -> None:
    """The stack's registry custom resource wrote the policies while CloudFormation deployed it: its physical id
    is the registrar's answer (a skipped resource would read 'unknown', and only then would ``coafi deploy`` run the
    registrar itself), and ``coafi deploy`` registers no policies of its own."""
    from coafi.engine.registrar import PHYSICAL_ID, registry_resource
    from coafi.resilience.registry import PolicyRegistry

    resource = registry_resource(stack.stack_name)
    assert resource is not None and resource.physical_id == PHYSICAL_ID
    registry = PolicyRegistry(stack.state_table_name)
    assert [p.id for p in registry.workflow_policies(WORKFLOW)] == ["transient-retry", "permanent-fail"]
    assert registry.workflow_policies("content-generation") == []
    found = registry.get_error_policy("DependencyUnavailable", "task", workflow_id=WORKFLOW)
    assert found is not None and found.id == "transient-retry" and found.escalationThreshold is not None
    item = aws.client("dynamodb").get_item(TableName=stack.state_table_name, ConsistentRead=True, Key={
        "PK": {"S": "ERRORPOLICY"}, "SK": {"S": "POLICY#permanent-fail"}})["Item"]
    assert item["source"] == {"S": "statemachines/policies/permanent-fail.yaml"}
