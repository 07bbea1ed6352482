"""LocalStack stores EventBridge Scheduler schedules but never fires them; the embedded local cloud does, on a
clock that tests advance, so a three-day delay is tested in seconds."""

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
from coafi.local.schedules import advance_clock, local_clock, tick

pytestmark = pytest.mark.localstack


@pytest.fixture
def clock(local_cloud: Any, repo_root: Path) -> Iterator[None]:
    local_clock(repo_root).reset()
    aws._cached.cache_clear()
    yield
    local_clock(repo_root).reset()


def _executions(machine: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    return result


def test_a_schedule_three_days_out_fires_when_the_local_clock_moves(
    clock: None, local_cloud: Any, repo_root: Path
) -> None:
    sfn, scheduler = aws.client("stepfunctions"), aws.client("scheduler")
    role = "arn:aws:iam::000000000000:role/coafi-e2e-scheduler"
    name = f"e2e-delayed-{uuid.uuid4().hex[:8]}"
    machine = sfn.create_state_machine(
        name=name, roleArn=role,
        definition=json.dumps({"StartAt": "done", "States": {"done": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    due = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    scheduler.create_schedule(
        Name=name, ScheduleExpression=f"at({due})", FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": machine, "RoleArn": role, "Input": json.dumps({"reminder": name})},
    )
    try:
        time.sleep(2)
        assert _executions(machine) == []  # LocalStack alone never fires it, and it is not due yet
        advance_clock("3d", project_root=repo_root)
        advance_clock("2m", project_root=repo_root)
        deadline = time.monotonic() + 15
        while not _executions(machine) and time.monotonic() < deadline:
            if not local_cloud.embedded:
                tick(repo_root)  # a LocalStack without COAFI's plugin: fire from here
            time.sleep(0.5)
        executions = _executions(machine)
        assert len(executions) == 1
        execution_input = sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"]
        assert json.loads(execution_input) == {"reminder": name}
        names = [s["Name"] for s in scheduler.list_schedules()["Schedules"]]
        assert name not in names  # ActionAfterCompletion: DELETE
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)
