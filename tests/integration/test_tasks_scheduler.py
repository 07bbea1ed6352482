"""TaskScheduler on moto: which way each task takes (SQS DelaySeconds, Scheduler at(), Scheduler cron), the
records and their statuses, cancelling, batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.tasks import (
    Route,
    Task,
    TaskAlreadyExists,
    TaskConfigurationError,
    TaskNotFound,
    TaskScheduler,
    TaskSchedulingError,
    TaskStatus,
)
from coafi.tasks.testing import TaskResources, receive
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import TABLE

NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cloud(fixture_project: Path, repo_root: Path) -> Iterator[InProcessCloud]:
    with InProcessCloud(fixture_project, definitions=[], core_root=repo_root) as cloud:
        yield cloud


@pytest.fixture
def sent(cloud: InProcessCloud) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every SendMessage / SendMessageBatch call (what the queue was asked to do)."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    events = aws.client("sqs").meta.events
    events.register("provide-client-params.sqs.SendMessage", record)
    events.register("provide-client-params.sqs.SendMessageBatch", record)
    yield calls
    events.unregister("provide-client-params.sqs.SendMessage", record)
    events.unregister("provide-client-params.sqs.SendMessageBatch", record)


def schedules(resources: TaskResources) -> dict[str, dict[str, Any]]:
    client = aws.client("scheduler")
    names = [s["Name"] for s in client.list_schedules(GroupName=resources.schedule_group)["Schedules"]]
    return {n: client.get_schedule(Name=n, GroupName=resources.schedule_group) for n in names}


def test_a_task_for_now_is_one_queue_message_carrying_the_whole_task(
    scheduler: TaskScheduler, resources: TaskResources, sent: list[dict[str, Any]]
) -> None:
    record = scheduler.schedule_task(Task(type="echo", payload={"x": 1}, priority=5, metadata={"by": "test"}))
    assert record.status == TaskStatus.SCHEDULED and record.route == Route.QUEUE
    assert len(record.id) == 32  # generated
    assert sent[-1]["DelaySeconds"] == 0
    [message] = receive(resources.queue_url)
    body = json.loads(message["Body"])
    assert body == {"kind": "coafi.task", "version": 1, "taskId": record.id,
                    "task": {"id": record.id, "type": "echo", "payload": {"x": 1}, "priority": 5,
                             "metadata": {"by": "test"}}}
    assert message["MessageAttributes"]["taskType"]["StringValue"] == "echo"
    assert schedules(resources) == {}
    stored = scheduler.get_task_status(record.id)
    assert stored.model_dump() == record.model_dump()


@pytest.mark.parametrize("delay", [5, 60, 899.2, 900])
def test_delays_up_to_900_seconds_use_sqs_delay_seconds(
    scheduler: TaskScheduler, resources: TaskResources, sent: list[dict[str, Any]], delay: float
) -> None:
    before = datetime.now(UTC)
    record = scheduler.schedule_task_with_delay(Task(type="echo"), delay)
    assert record.status == TaskStatus.DELAYED and record.route == Route.QUEUE
    assert sent[-1]["DelaySeconds"] == min(900, int(delay + 0.99))
    assert record.runAt is not None and record.runAt >= before + timedelta(seconds=delay - 1)
    assert receive(resources.queue_url) == []  # not visible before its delay
    assert schedules(resources) == {}


def test_longer_delays_become_one_time_at_schedules_that_delete_themselves(
    resources: TaskResources, sent: list[dict[str, Any]]
) -> None:
    scheduler = TaskScheduler(resources.settings(TABLE), now=lambda: NOW)
    record = scheduler.schedule_task_with_delay(Task(id="remind-later", type="workflow:diamond"), 901.5)
    assert record.status == TaskStatus.DELAYED and record.route == Route.AT
    assert record.runAt == NOW + timedelta(seconds=902)  # whole seconds, never early
    assert sent == []  # nothing on the queue yet
    schedule = schedules(resources)["task-remind-later"]
    assert schedule["ScheduleExpression"] == "at(2026-11-25T09:15:02)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == resources.queue_arn
    assert target["RoleArn"] == resources.scheduler_role_arn
    assert target["DeadLetterConfig"] == {"Arn": resources.dead_letter_arn}  # from the queue's redrive policy
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert json.loads(target["Input"]) == {"kind": "coafi.task", "version": 1, "taskId": "remind-later"}
    assert record.scheduleName == "task-remind-later"


def test_cron_tasks_are_schedules_with_a_window_their_own_retries_and_the_dlq(resources: TaskResources) -> None:
    scheduler = TaskScheduler(resources.settings(TABLE))
    record = scheduler.schedule_cron_task(Task(id="nightly", type="echo", payload={"report": "daily"}),
                                          "0 2 * * ? *", timezone="Europe/Berlin", window_minutes=15,
                                          retry_attempts=2, max_event_age_seconds=600)
    assert record.status == TaskStatus.SCHEDULED and record.route == Route.CRON
    assert record.cron == "cron(0 2 * * ? *)" and record.timezone == "Europe/Berlin"
    schedule = schedules(resources)["task-nightly"]
    assert schedule["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert schedule.get("ActionAfterCompletion") in (None, "NONE")
    target = schedule["Target"]
    assert target["Arn"] == resources.queue_arn
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600}
    assert target["DeadLetterConfig"] == {"Arn": resources.dead_letter_arn}
    assert json.loads(target["Input"]) == {"kind": "coafi.task", "version": 1, "taskId": "nightly",
                                           "occurrence": "<aws.scheduler.scheduled-time>"}
    rate = scheduler.schedule_cron_task(Task(type="echo"), "rate(6 hours)", window_minutes=0)
    assert schedules(resources)[f"task-{rate.id}"]["FlexibleTimeWindow"] == {"Mode": "OFF"}


@pytest.mark.parametrize(("expression", "problem"), [
    ("0 2 * *", "6 fields"), ("every day", "6 fields"), ("at(2030-01-01T00:00:00)", "one-time"),
])
def test_bad_cron_expressions_fail_before_anything_is_written(
    scheduler: TaskScheduler, resources: TaskResources, expression: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        scheduler.schedule_cron_task(Task(id="never-written", type="echo"), expression)
    with pytest.raises(ValueError, match="time zone"):
        scheduler.schedule_cron_task(Task(type="echo"), "0 2 * * ? *", timezone="Mars/Olympus")
    with pytest.raises(TaskNotFound):
        scheduler.get_task_status("never-written")
    assert schedules(resources) == {}


def test_cancel_before_dispatch_marks_the_task_and_deletes_its_schedule(
    scheduler: TaskScheduler, resources: TaskResources
) -> None:
    soon = scheduler.schedule_task_with_delay(Task(type="echo"), 30)
    later = scheduler.schedule_task_with_delay(Task(type="echo"), 3 * 86400)
    cron = scheduler.schedule_cron_task(Task(type="echo"), "rate(1 hour)")
    assert set(schedules(resources)) == {f"task-{later.id}", f"task-{cron.id}"}
    assert scheduler.cancel_tasks([soon.id, later.id, cron.id, "no-such-task"]) == {
        soon.id: True, later.id: True, cron.id: True, "no-such-task": False}
    assert schedules(resources) == {}
    for task_id in (soon.id, later.id, cron.id):
        record = scheduler.get_task_status(task_id)
        assert record.status == TaskStatus.CANCELLED and record.endedAt is not None
    assert scheduler.cancel_task(soon.id) is False  # already cancelled


def test_a_taken_id_is_refused_and_the_first_task_is_untouched(scheduler: TaskScheduler) -> None:
    scheduler.schedule_task(Task(id="unique-1", type="echo", payload={"first": True}))
    with pytest.raises(TaskAlreadyExists):
        scheduler.schedule_task_with_delay(Task(id="unique-1", type="echo", payload={"second": True}), 5000)
    assert scheduler.get_task_status("unique-1").payload == {"first": True}


def test_invalid_tasks_are_refused() -> None:
    for bad in ({"type": "has space"}, {"type": "echo", "id": "a/b"}, {"type": "workflow:Upper"},
                {"type": "echo", "id": "x" * 60}, {"type": "echo", "unknown": 1}):
        with pytest.raises(ValueError):
            Task.model_validate(bad)


def test_a_refused_send_leaves_the_task_failed_not_pending(resources: TaskResources) -> None:
    scheduler = TaskScheduler(resources.settings(TABLE, queue_url=resources.queue_url + "-missing"))
    with pytest.raises(TaskSchedulingError):
        scheduler.schedule_task(Task(id="doomed-send", type="echo"))
    record = scheduler.get_task_status("doomed-send")
    assert record.status == TaskStatus.FAILED and record.error is not None
    assert record.error.type == "EnqueueFailed"


def test_long_delays_need_the_scheduler_role(resources: TaskResources) -> None:
    scheduler = TaskScheduler(resources.settings(TABLE, scheduler_role_arn=""))
    assert scheduler.schedule_task_with_delay(Task(type="echo"), 900).route == Route.QUEUE  # the queue needs none
    with pytest.raises(TaskConfigurationError, match="Scheduler execution role"):
        scheduler.schedule_task_with_delay(Task(id="no-role", type="echo"), 901)
    assert scheduler.get_task_status("no-role").status == TaskStatus.FAILED


def test_batches_go_ten_messages_per_call_and_report_failures_per_task(
    scheduler: TaskScheduler, resources: TaskResources, sent: list[dict[str, Any]]
) -> None:
    scheduler.schedule_task(Task(id="batch-taken", type="echo"))
    sent.clear()
    tasks = [Task(id=f"batch-{i:02d}", type="echo", payload={"i": i}) for i in range(23)]
    result = scheduler.schedule_tasks([*tasks, Task(id="batch-taken", type="echo")], delay_seconds=0)
    assert [r.id for r in result.scheduled] == [t.id for t in tasks]
    assert set(result.failed) == {"batch-taken"} and "already exists" in result.failed["batch-taken"]
    assert [len(call["Entries"]) for call in sent] == [10, 10, 3]
    bodies = [json.loads(m["Body"])["taskId"] for m in receive(resources.queue_url, max_messages=50)]
    assert sorted(bodies) == sorted([*[t.id for t in tasks], "batch-taken"])
    long = scheduler.schedule_tasks([Task(type="echo"), Task(type="echo")], delay_seconds=7200)
    assert [r.route for r in long.scheduled] == [Route.AT, Route.AT] and not long.failed
    assert len(schedules(resources)) == 2
    with pytest.raises(ValueError, match="repeat"):
        scheduler.schedule_tasks([Task(id="twice", type="echo"), Task(id="twice", type="echo")])


def test_tasks_are_listed_by_status_newest_first(scheduler: TaskScheduler) -> None:
    first = scheduler.schedule_task_with_delay(Task(type="echo"), 600)
    second = scheduler.schedule_task_with_delay(Task(type="echo"), 600)
    scheduler.cancel_task(first.id)
    delayed = [r.id for r in scheduler.list_tasks("delayed", limit=500)]
    assert second.id in delayed and first.id not in delayed
    cancelled = [r.id for r in scheduler.list_tasks(TaskStatus.CANCELLED, limit=500)]
    assert first.id in cancelled
    everything = scheduler.list_tasks(limit=500)
    assert {first.id, second.id} <= {r.id for r in everything}
    assert [r.createdAt for r in everything] == sorted((r.createdAt for r in everything), reverse=True)
    assert len(scheduler.list_tasks(limit=1)) == 1


def test_negative_and_non_numeric_delays_are_refused(scheduler: TaskScheduler) -> None:
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scheduler.schedule_task_with_delay(Task(type="echo"), bad)


def test_design_names_are_the_same_methods() -> None:
    assert TaskScheduler.scheduleTaskWithDelay is TaskScheduler.schedule_task_with_delay
    assert TaskScheduler.cancelTasks is TaskScheduler.cancel_tasks
