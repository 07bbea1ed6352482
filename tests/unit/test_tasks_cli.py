"""``coafi tasks schedule|cancel|status|ls`` on moto, resources read from a (moto) CloudFormation stack's
outputs as on a deployed app."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from coafi import aws
from coafi.state import schema
from coafi.tasks import cli
from coafi.tasks.testing import TaskResources, create_task_resources

STACK = "CliTasks"
TABLE = "cli-tasks-state"


class _Http:
    def __init__(self) -> None:
        self.status_code = 200
        self.headers: dict[str, str] = {}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskResources]:
    """moto for the resources; DescribeStacks answered with the outputs a deployed stack would have (moto's
    CloudFormation needs extras the project does not install)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "COAFI_TASK_QUEUE_URL", "COAFI_TABLE_NAME", "COAFI_STACK_NAME"):
        monkeypatch.delenv(key, raising=False)
    aws._cached.cache_clear()
    with mock_aws():
        schema.create_table(aws.client("dynamodb"), TABLE)
        resources = create_task_resources("cli")
        outputs = {"StateTableName": TABLE, "EventBusName": "cli-bus", "TaskQueueUrl": resources.queue_url,
                   "ScheduleGroupName": resources.schedule_group, "TaskSchedulerRoleArn": resources.scheduler_role_arn}

        def describe_stacks(params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]]:
            body = params.get("body") or {}
            name = (body if isinstance(body, dict) else json.loads(body)).get("StackName")
            if name != STACK:
                raise ClientError({"Error": {"Code": "ValidationError",
                                             "Message": f"Stack with id {name} does not exist"}}, "DescribeStacks")
            return _Http(), {"Stacks": [{
                "StackName": STACK, "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }]}

        events = aws.client("cloudformation").meta.events
        events.register("before-call.cloudformation.DescribeStacks", describe_stacks)
        yield resources
        events.unregister("before-call.cloudformation.DescribeStacks", describe_stacks)
    aws._cached.cache_clear()


def coafi(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coafi")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_schedule_status_ls_and_cancel(stack: TaskResources, capsys: pytest.CaptureFixture[str]) -> None:
    assert coafi("tasks", "--stack", STACK, "schedule", "echo", "--payload", '{"x": 1}', "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["type"], record["status"], record["route"], record["payload"]) == (
        "echo", "SCHEDULED", "queue", {"x": 1})
    body = json.loads(aws.client("sqs").receive_message(QueueUrl=stack.queue_url)["Messages"][0]["Body"])
    assert body["taskId"] == record["id"]

    assert coafi("tasks", "--stack", STACK, "schedule", "workflow:nightly", "--delay", "3d", "--id", "in-3-days") == 0
    line = capsys.readouterr().out
    assert line.startswith("in-3-days  DELAYED  workflow:nightly  at ") and line.rstrip().endswith("via at")

    assert coafi("tasks", "--stack", STACK, "schedule", "echo", "--cron", "0 9 ? * MON-FRI *",
                 "--timezone", "Europe/Berlin", "--window", "0", "--id", "weekdays") == 0
    assert "on cron(0 9 ? * MON-FRI *) (Europe/Berlin)  via cron" in capsys.readouterr().out
    names = {s["Name"] for s in aws.client("scheduler").list_schedules(GroupName=stack.schedule_group)["Schedules"]}
    assert names == {"task-in-3-days", "task-weekdays"}

    assert coafi("tasks", "--stack", STACK, "status", "in-3-days") == 0
    status = capsys.readouterr().out
    assert "status       DELAYED" in status and "route        at" in status

    assert coafi("tasks", "--stack", STACK, "ls", "--status", "delayed") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["ID", "STATUS", "TYPE", "WHEN", "CREATED"]
    assert [row.split()[0] for row in listing[1:]] == ["in-3-days"]

    assert coafi("tasks", "--stack", STACK, "cancel", "in-3-days") == 0
    assert capsys.readouterr().out.strip() == "in-3-days  CANCELLED"
    assert coafi("tasks", "--stack", STACK, "cancel", "in-3-days") == 1
    assert "it is CANCELLED" in capsys.readouterr().err
    assert coafi("tasks", "--stack", STACK, "ls", "--json") == 0
    listed = {r["id"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {record["id"]: "SCHEDULED", "in-3-days": "CANCELLED", "weekdays": "SCHEDULED"}


def test_errors_are_messages_with_exit_codes(
    stack: TaskResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert coafi("tasks", "--stack", STACK, "status", "nope") == 1
    assert "no task 'nope'" in capsys.readouterr().err
    assert coafi("tasks", "--stack", STACK, "cancel", "nope", "--json") == 1
    assert json.loads(capsys.readouterr().out) == {"taskId": "nope", "cancelled": False, "status": None}
    assert coafi("tasks", "--stack", STACK, "schedule", "echo", "--cron", "every day") == 1
    assert "6 fields" in capsys.readouterr().err
    assert coafi("tasks", "--stack", STACK, "schedule", "not a type") == 1
    assert "type" in capsys.readouterr().err
    assert coafi("tasks", "--stack", "NotDeployed", "ls") == 2
    assert "not deployed" in capsys.readouterr().err
    for bad in (["schedule", "echo", "--payload", "{oops"], ["schedule", "echo", "--delay", "soon"],
                ["schedule", "echo", "--delay", "5", "--cron", "rate(1 hour)"], ["ls", "--status", "lost"]):
        with pytest.raises(SystemExit) as exit_info:
            coafi("tasks", *bad)
        assert exit_info.value.code == 2
    # without a stack: the environment names the resources
    monkeypatch.setenv("COAFI_TASK_QUEUE_URL", stack.queue_url)
    monkeypatch.setenv("COAFI_TABLE_NAME", TABLE)
    assert coafi("tasks", "--stack", "NotDeployed", "schedule", "echo", "--id", "from-env") == 0
    assert capsys.readouterr().out.startswith("from-env  SCHEDULED")
