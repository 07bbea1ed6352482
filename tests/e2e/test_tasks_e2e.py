"""Tasks end to end on the local cloud: the deployed dispatcher (SQS event source) runs actions and starts
workflows, drops cancelled tasks, lets a poison message fail alone, and a three-day delay fires when the
local clock moves. Needs the Tasks construct in the stack (infra/stack.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.deploy import StackOutputs
from coafi.local.schedules import advance_clock, local_clock, tick
from coafi.state import StateStore
from coafi.tasks import Task, TaskRecord, TaskScheduler, TaskSettings, TaskStatus

pytestmark = pytest.mark.localstack

CONTENT_REQUEST: dict[str, Any] = {
    "contentType": "article",
    "parameters": {"topic": "tasks end to end", "lengthWords": 40},
    "metadata": {"userId": "tester", "role": "editor"},
}
#: validate-content-parameters reads its settings from the step's parameters (= the payload) and the request
#: from the input (= the payload too).
VALIDATE_PAYLOAD = {**CONTENT_REQUEST, "allowedContentTypes": ["article", "summary"], "maxLengthWords": 500}


@pytest.fixture(scope="module")
def scheduler(stack: StackOutputs) -> TaskScheduler:
    settings = TaskSettings.from_stack(stack.stack_name)
    if not settings.scheduler_role_arn:
        pytest.skip("the deployed stack has no Tasks construct (add it in infra/stack.py)")
    return TaskScheduler(settings)


def wait_for(scheduler: TaskScheduler, task_id: str, done: Callable[[TaskRecord], bool], timeout: float = 120,
             poll: Callable[[], Any] | None = None) -> TaskRecord:
    deadline = time.monotonic() + timeout
    while True:
        if poll is not None:
            poll()
        record = scheduler.get_task_status(task_id)
        if done(record) or time.monotonic() > deadline:
            return record
        time.sleep(1)


def final(record: TaskRecord) -> bool:
    return record.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def test_the_dispatcher_runs_an_action_task(scheduler: TaskScheduler, stack: StackOutputs) -> None:
    record = scheduler.schedule_task(Task(type="validate-content-parameters", payload=VALIDATE_PAYLOAD))
    done = wait_for(scheduler, record.id, final)
    assert done.status == TaskStatus.SUCCEEDED, done.error
    assert done.target == "validate-content-parameters" and done.attempts == 1
    steps = StateStore(stack.state_table_name).list_steps(f"task:{record.id}")
    assert [s.status for s in steps] == ["SUCCEEDED"]


def test_a_workflow_task_starts_the_workflow_and_follows_it_to_the_end(scheduler: TaskScheduler) -> None:
    request = {**CONTENT_REQUEST, "metadata": {**CONTENT_REQUEST["metadata"], "requestId": f"task-{uuid.uuid4()}"}}
    record = scheduler.schedule_task(Task(type="workflow:content-generation", payload=request))
    done = wait_for(scheduler, record.id, final, timeout=240)
    assert done.status == TaskStatus.SUCCEEDED, done.error
    assert done.executionArn is not None and done.executionArn.endswith(f":{record.id}")
    assert done.output["steps"]["storeContent"]["output"]["contentId"]


def test_a_task_cancelled_while_its_message_waits_is_never_run(scheduler: TaskScheduler, stack: StackOutputs) -> None:
    record = scheduler.schedule_task_with_delay(Task(type="validate-content-parameters", payload=VALIDATE_PAYLOAD),
                                                10)
    assert scheduler.cancel_task(record.id) is True
    time.sleep(25)  # the delayed message reaches the dispatcher in the meantime
    assert scheduler.get_task_status(record.id).status == TaskStatus.CANCELLED
    assert StateStore(stack.state_table_name).list_steps(f"task:{record.id}") == []


def test_a_poison_message_does_not_hold_back_its_neighbours(scheduler: TaskScheduler) -> None:
    aws.client("sqs").send_message(QueueUrl=scheduler.settings.queue_url, MessageBody="poison: not a task")
    record = scheduler.schedule_task(Task(type="validate-content-parameters", payload=VALIDATE_PAYLOAD))
    assert wait_for(scheduler, record.id, final).status == TaskStatus.SUCCEEDED


def test_a_three_day_delay_runs_when_the_local_clock_moves(
    scheduler: TaskScheduler, local_cloud: Any, repo_root: Path
) -> None:
    local_clock(repo_root).reset()
    try:
        record = scheduler.schedule_task_with_delay(
            Task(type="validate-content-parameters", payload=VALIDATE_PAYLOAD), 3 * 86400)
        names = [s["Name"] for s in aws.client("scheduler").list_schedules(
            GroupName=scheduler.settings.schedule_group)["Schedules"]]
        assert f"task-{record.id}" in names
        time.sleep(2)
        assert scheduler.get_task_status(record.id).status == TaskStatus.DELAYED
        advance_clock("3d", project_root=repo_root)
        advance_clock("2m", project_root=repo_root)
        poll = None if local_cloud.embedded else (lambda: tick(repo_root))  # no COAFI plugin: fire from here
        done = wait_for(scheduler, record.id, final, timeout=120, poll=poll)
        assert done.status == TaskStatus.SUCCEEDED, done.error
        names = [s["Name"] for s in aws.client("scheduler").list_schedules(
            GroupName=scheduler.settings.schedule_group)["Schedules"]]
        assert f"task-{record.id}" not in names  # ActionAfterCompletion: DELETE
    finally:
        local_clock(repo_root).reset()


def test_the_cli_sees_the_same_tasks(scheduler: TaskScheduler, stack: StackOutputs,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from coafi.cli.main import build_parser

    parser = build_parser()
    if "tasks" not in parser.format_help():
        pytest.skip("coafi tasks is not wired into coafi.cli.main yet")
    from coafi.cli.main import main

    assert main(["tasks", "--stack", stack.stack_name, "schedule", "validate-content-parameters",
                 "--payload", json.dumps(VALIDATE_PAYLOAD), "--json"]) == 0
    task_id = json.loads(capsys.readouterr().out)["id"]
    done = wait_for(scheduler, task_id, final)
    assert done.status == TaskStatus.SUCCEEDED
    assert main(["tasks", "--stack", stack.stack_name, "status", task_id]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out
