"""Telemetry end to end on the embedded LocalStack: after the sample workflow runs, its metrics are readable with
GetMetricStatistics (the plugin turns the functions' EMF log lines into metrics, as CloudWatch Logs does on AWS)
and its functions' CloudWatch log lines carry the execution id and the step id."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coafi import aws
from coafi.deploy import StackOutputs
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

WORKFLOW = "content-generation"
NAMESPACE = "Coafi"  # infra/config.py metrics_namespace: the functions' POWERTOOLS_METRICS_NAMESPACE
TASK_STEPS = ["validateParameters", "checkPermissions", "generateContent", "storeContent", "updateRegistry",
              "notifySubscribers"]
PATIENCE = 90.0  # seconds: logs, then metrics, are delivered asynchronously after the invocation returns


def eventually(probe: Callable[[], Any], what: str) -> Any:
    """``probe()`` once it returns something truthy; fails naming ``what`` if it never does."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"never happened: {what}"
            return value
        time.sleep(1.0)


def metric_sum(name: str, dimensions: dict[str, str], since: datetime) -> float:
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE, MetricName=name, Statistics=["Sum", "SampleCount"], Period=60,
        StartTime=since, EndTime=datetime.now(UTC) + timedelta(minutes=2),
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
    )["Datapoints"]
    return float(sum(p["Sum"] for p in points))


def reaches(name: str, dimensions: dict[str, str], since: datetime, target: float) -> Callable[[], bool]:
    return lambda: metric_sum(name, dimensions, since) >= target


def run_sample(stack: StackOutputs, role: str = "editor") -> tuple[str, dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.workflow_arn(WORKFLOW), name=f"telemetry-{uuid.uuid4()}",
                              input=json.dumps({
                                  "contentType": "article", "parameters": {"topic": "telemetry", "lengthWords": 40},
                                  "metadata": {"requestId": f"t-{uuid.uuid4()}", "userId": "ops", "role": role},
                              }))["executionArn"]

    def finished() -> dict[str, Any] | None:
        description = sfn.describe_execution(executionArn=arn)
        return None if description["status"] == "RUNNING" else dict(description)

    return arn, eventually(finished, f"execution {arn} finished")


def function_of_step(stack: StackOutputs, step_id: str) -> str:
    definition = json.loads(aws.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.workflow_arn(WORKFLOW))["definition"])

    def find(states: dict[str, Any]) -> str | None:
        for name, state in states.items():
            if name == step_id and state.get("Type") == "Task":
                return str(state["Parameters"]["FunctionName"])
            for branch in state.get("Branches", []):
                found = find(branch["States"])
                if found:
                    return found
        return None

    found = find(definition["States"])
    assert found, f"no Task state {step_id} in the {WORKFLOW} state machine"
    return found


def log_lines(function: str, since: datetime) -> list[dict[str, Any]]:
    """The JSON log lines of ``function`` since ``since``, from the group it logs to (its LoggingConfig's on AWS;
    LocalStack writes to /aws/lambda/<name>)."""
    logs = aws.client("logs")
    config = aws.client("lambda").get_function_configuration(FunctionName=function)
    groups = {config.get("LoggingConfig", {}).get("LogGroup"), f"/aws/lambda/{config['FunctionName']}"}
    lines = []
    for group in filter(None, groups):
        try:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, startTime=int(since.timestamp() * 1000))
            for page in pages:
                for event in page["events"]:
                    text = event["message"].strip()
                    if text.startswith("{"):
                        try:
                            lines.append(json.loads(text))
                        except ValueError:
                            continue
        except logs.exceptions.ResourceNotFoundException:
            continue
    return lines


def test_a_run_is_readable_with_get_metric_statistics_and_its_log_lines_carry_the_execution(
    stack: StackOutputs,
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    workflow = {"workflow": WORKFLOW}
    before = {name: metric_sum(name, workflow, since) for name in ("WorkflowStarted", "WorkflowSucceeded")}
    steps_before = {step: metric_sum("StepSucceeded", {**workflow, "step": step}, since) for step in TASK_STEPS}

    arn, description = run_sample(stack)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert [s.stepId for s in StateStore(stack.state_table_name).list_steps(arn)] == TASK_STEPS

    # metrics: the state function's workflow counts, and every step's from the @action wrapper
    for name in ("WorkflowStarted", "WorkflowSucceeded"):
        eventually(reaches(name, workflow, since, before[name] + 1), f"{name} for workflow {WORKFLOW}")
    for step in TASK_STEPS:
        where = {**workflow, "step": step}
        eventually(reaches("StepSucceeded", where, since, steps_before[step] + 1), f"StepSucceeded for step {step}")
        assert metric_sum("StepStarted", where, since) >= 1
        duration = aws.client("cloudwatch").get_metric_statistics(
            Namespace=NAMESPACE, MetricName="StepDuration", Statistics=["SampleCount", "Maximum"], Period=60,
            StartTime=since, EndTime=datetime.now(UTC) + timedelta(minutes=2), Unit="Milliseconds",
            Dimensions=[{"Name": k, "Value": v} for k, v in where.items()])["Datapoints"]
        assert sum(p["SampleCount"] for p in duration) >= 1, f"StepDuration of {step} in milliseconds"
    assert metric_sum("WorkflowFailed", workflow, since) == 0

    # logs: each action's lines for this run carry the execution id (as correlation id too) and the step id
    for step in ("generateContent", "storeContent"):
        function = function_of_step(stack, step)

        def mine(function: str = function) -> list[dict[str, Any]]:
            return [line for line in log_lines(function, since) if line.get("execution_id") == arn]

        lines = eventually(mine, f"log lines of {function} with execution id {arn}")
        messages = [line["message"] for line in lines if "message" in line]
        assert "step started" in messages and "step succeeded" in messages
        for line in lines:
            if "message" in line:  # Powertools Logger lines (EMF documents carry executionId as metadata)
                assert (line["step_id"], line["correlation_id"], line["workflow_id"]) == (step, arn, WORKFLOW)
        emf = [line for line in log_lines(function, since) if "_aws" in line and line.get("executionId") == arn]
        assert emf and all(line["step"] == step for line in emf)

    # the state function logged the run's start and end with the execution id
    state_lines = [line for line in log_lines(stack.state_function_arn.split(":")[-1], since)
                   if line.get("execution_id") == arn and "message" in line]
    assert {"workflow started", "workflow succeeded"} <= {line["message"] for line in state_lines}
    assert all(line["correlation_id"] == arn for line in state_lines)


def test_a_failed_run_counts_workflow_failed_and_step_failed(stack: StackOutputs) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    workflow = {"workflow": WORKFLOW}
    failed_before = metric_sum("WorkflowFailed", workflow, since)
    step_before = metric_sum("StepFailed", {**workflow, "step": "checkPermissions"}, since)
    _, description = run_sample(stack, role="viewer")
    assert description["status"] == "FAILED"
    eventually(reaches("WorkflowFailed", workflow, since, failed_before + 1), "WorkflowFailed")
    eventually(reaches("StepFailed", {**workflow, "step": "checkPermissions"}, since, step_before + 1),
               "StepFailed for checkPermissions")
