"""Local firing of EventBridge Scheduler schedules: expressions, the movable clock, and firing on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from coafi.local.localstack_plugin.coafi_localstack_plugin.schedules import Expression
from coafi.local.schedules import Clock, LocalScheduler, parse_duration

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def times(expression: str, hours: float, tz: str = "UTC", anchor: datetime = T0) -> list[str]:
    parsed = Expression.parse(expression, tz)
    return [t.strftime("%a %Y-%m-%d %H:%M") for t in
            parsed.occurrences(T0, T0 + timedelta(hours=hours), anchor=anchor, tz=tz)]


def test_at_fires_once_inside_the_window() -> None:
    assert times("at(2026-11-28T09:00:00)", 72) == ["Sat 2026-11-28 09:00"]
    assert times("at(2026-11-28T09:00:01)", 72) == []
    assert times("at(2026-11-28T10:00:00)", 72, tz="Europe/Berlin") == ["Sat 2026-11-28 09:00"]


def test_rate_counts_from_the_schedules_start() -> None:
    assert times("rate(1 hour)", 3) == ["Wed 2026-11-25 10:00", "Wed 2026-11-25 11:00", "Wed 2026-11-25 12:00"]
    assert times("rate(90 minutes)", 3, anchor=T0 - timedelta(minutes=30)) == [
        "Wed 2026-11-25 10:00", "Wed 2026-11-25 11:30"]


@pytest.mark.parametrize(("expression", "hours", "expected"), [
    ("cron(0 12 * * ? *)", 48, ["Wed 2026-11-25 12:00", "Thu 2026-11-26 12:00"]),
    ("cron(30 9 ? * MON-FRI *)", 24 * 7, ["Wed 2026-11-25 09:30", "Thu 2026-11-26 09:30", "Fri 2026-11-27 09:30",
                                          "Mon 2026-11-30 09:30", "Tue 2026-12-01 09:30"]),
    ("cron(0/20 10 * * ? *)", 2, ["Wed 2026-11-25 10:00", "Wed 2026-11-25 10:20", "Wed 2026-11-25 10:40"]),
    ("cron(0 0 L * ? *)", 24 * 10, ["Mon 2026-11-30 00:00"]),
    ("cron(0 8 1 JAN,DEC ? 2026)", 24 * 40, ["Tue 2026-12-01 08:00"]),
])
def test_cron_matches_eventbridge_fields(expression: str, hours: float, expected: list[str]) -> None:
    assert times(expression, hours) == expected


def test_cron_honours_the_schedules_time_zone() -> None:
    # 09:00 in New York is 14:00 UTC in November
    assert times("cron(0 9 * * ? *)", 24, tz="America/New_York") == ["Wed 2026-11-25 14:00"]


def test_bad_expressions_are_refused() -> None:
    with pytest.raises(ValueError, match="6 fields"):
        Expression.parse("cron(0 12 * * ?)")
    with pytest.raises(ValueError, match="unsupported schedule expression"):
        Expression.parse("every day")


def test_the_clock_moves_by_its_file(tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock.json")
    before = clock.now()
    clock.advance(parse_duration("3d"))
    assert clock.offset() == timedelta(days=3)
    assert clock.now() - before >= timedelta(days=3)
    clock.advance(parse_duration("90s"))
    assert clock.offset() == timedelta(days=3, seconds=90)
    clock.reset()
    assert clock.offset() == timedelta(0)
    with pytest.raises(ValueError, match="not like 90s"):
        parse_duration("soon")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield lambda service: boto3.client(service, region_name="us-east-1")


def _queue(client: Any, name: str) -> tuple[str, str]:
    url = client("sqs").create_queue(QueueName=name)["QueueUrl"]
    arn = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def test_a_three_day_delay_fires_when_the_clock_is_advanced(aws_env: Any, tmp_path: Path) -> None:
    client = aws_env
    url, arn = _queue(client, "work")
    due = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    client("scheduler").create_schedule(
        Name="in-three-days", ScheduleExpression=f"at({due})", FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": arn, "RoleArn": "arn:aws:iam::123456789012:role/s",
                "Input": json.dumps({"task": "remind", "at": "<aws.scheduler.scheduled-time>"})},
    )
    clock = Clock(tmp_path / "clock.json")
    scheduler = LocalScheduler(client, clock, tmp_path / "state.json")
    assert scheduler.tick() == []  # not due yet
    clock.advance(timedelta(days=3, minutes=1))
    fired = scheduler.tick()
    assert [(f.schedule, f.ok) for f in fired] == [("in-three-days", True)]
    body = json.loads(client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body == {"task": "remind", "at": due + "Z"}
    assert client("scheduler").list_schedules()["Schedules"] == []  # deleted after completion
    assert scheduler.tick() == []  # and never fired twice


def test_a_failing_target_goes_to_its_dead_letter_queue(aws_env: Any, tmp_path: Path) -> None:
    client = aws_env
    dlq_url, dlq_arn = _queue(client, "schedule-dlq")
    client("scheduler").create_schedule(
        Name="broken", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:states:us-east-1:123456789012:stateMachine:missing",
                "RoleArn": "arn:aws:iam::123456789012:role/s", "Input": "{}",
                "RetryPolicy": {"MaximumRetryAttempts": 1}, "DeadLetterConfig": {"Arn": dlq_arn}},
    )
    clock = Clock(tmp_path / "clock.json")
    clock.advance(timedelta(hours=1, minutes=1))
    fired = LocalScheduler(client, clock, tmp_path / "state.json").tick()
    assert len(fired) == 1 and not fired[0].ok and fired[0].dead_lettered
    message = client("sqs").receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"][0]
    attributes = message["MessageAttributes"]
    assert attributes["TARGET_ARN"]["StringValue"].endswith(":stateMachine:missing")
    assert attributes["ERROR_CODE"]["StringValue"]


def test_a_state_machine_target_starts_an_execution_per_occurrence(aws_env: Any, tmp_path: Path) -> None:
    client = aws_env
    role = "arn:aws:iam::123456789012:role/s"
    machine = client("stepfunctions").create_state_machine(
        name="nightly", roleArn=role,
        definition=json.dumps({"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    client("scheduler").create_schedule(
        Name="every-6h", ScheduleExpression="rate(6 hours)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": machine, "RoleArn": role, "Input": json.dumps({"trigger": "schedule"})},
    )
    clock = Clock(tmp_path / "clock.json")
    clock.advance(timedelta(days=1, minutes=1))
    fired = LocalScheduler(client, clock, tmp_path / "state.json").tick()
    assert len(fired) == 4 and all(f.ok for f in fired)
    executions = client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 4
