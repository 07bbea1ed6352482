"""The dispatcher on moto with real handlers behind Lambda: tasks run once, cancelled ones never, a poison or
throttled message fails alone, workers route types, concurrency is bounded, and delayed and cron tasks reach
the queue when the local clock moves."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from coafi import aws
from coafi.definitions import load_definitions
from coafi.local.schedules import Clock, LocalScheduler
from coafi.state import StateStore
from coafi.tasks import (
    DispatcherSettings,
    Task,
    TaskDispatcher,
    TaskScheduler,
    TaskStatus,
    WorkerNotFound,
)
from coafi.tasks.runtime import DispatcherRuntime
from coafi.tasks.store import IDEMPOTENCY_PK
from coafi.tasks.testing import FakeLambdaContext, TaskResources, receive, sqs_event
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import STATE_FUNCTION, TABLE

CALLS: Counter[str] = Counter()
STARTED: list[str] = []
GAUGE = {"active": 0, "max": 0}
_GAUGE_LOCK = threading.Lock()


def count(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Counts its runs per task (the step id of a task-run action is the task id)."""
    task_id = event["context"]["stepId"]
    CALLS[task_id] += 1
    STARTED.append(task_id)
    return {"ran": CALLS[task_id], "occurrence": event["task"]["occurrence"]}


def gauge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Measures how many runs overlap."""
    with _GAUGE_LOCK:
        GAUGE["active"] += 1
        GAUGE["max"] = max(GAUGE["max"], GAUGE["active"])
    time.sleep(0.05)
    with _GAUGE_LOCK:
        GAUGE["active"] -= 1
    return {}


@pytest.fixture(scope="module")
def cloud(fixture_project: Path, repo_root: Path) -> Iterator[InProcessCloud]:
    definitions = load_definitions([fixture_project / "statemachines" / "diamond.yaml"])
    with InProcessCloud(fixture_project, definitions=definitions, core_root=repo_root,
                        extra_handlers={"count": count, "gauge": gauge}) as cloud:
        yield cloud


def dispatcher_settings(cloud: InProcessCloud) -> DispatcherSettings:
    return DispatcherSettings(
        table_name=TABLE, invoke_timeout=10,
        action_functions={name: name for name in cloud.handlers if name != STATE_FUNCTION},
        workflow_arns=dict(cloud.state_machines),
    )


@pytest.fixture
def dispatcher(cloud: InProcessCloud) -> TaskDispatcher:
    return TaskDispatcher(dispatcher_settings(cloud))


@pytest.fixture
def runtime(dispatcher: TaskDispatcher) -> DispatcherRuntime:
    return DispatcherRuntime(dispatcher, concurrency=4)


def deliver(runtime: DispatcherRuntime, resources: TaskResources, messages: list[dict[str, Any]] | None = None
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """Hand the queue's visible messages (or ``messages``) to the dispatcher as one Lambda SQS event; returns
    the message ids it reported as failed, and the messages."""
    messages = receive(resources.queue_url) if messages is None else messages
    response = runtime.handle(sqs_event(messages, resources.queue_arn), FakeLambdaContext())
    return [f["itemIdentifier"] for f in response["batchItemFailures"]], messages


def test_a_task_runs_its_action_and_the_record_says_how_it_went(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="echo", payload={"x": 1}))
    failed, messages = deliver(runtime, resources)
    assert failed == [] and len(messages) == 1
    done = scheduler.get_task_status(record.id)
    assert done.status == TaskStatus.SUCCEEDED
    assert done.output == {"step": record.id, "parameters": {"x": 1}, "saw": []}
    assert done.target == "echo" and done.worker is None and done.attempts == 1
    assert done.dispatchedAt is not None and done.endedAt is not None and done.error is None
    # the action's @action wrapper recorded the attempt under the task's own execution id
    [step] = StateStore(TABLE).list_steps(f"task:{record.id}")
    assert step.stepId == record.id and step.status == "SUCCEEDED"


def test_a_task_cancelled_before_dispatch_is_dropped_never_run(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="count"))
    assert scheduler.cancel_task(record.id) is True
    failed, messages = deliver(runtime, resources)
    assert failed == [] and len(messages) == 1  # consumed, not redelivered
    assert CALLS[record.id] == 0
    assert scheduler.get_task_status(record.id).status == TaskStatus.CANCELLED
    assert scheduler.cancel_task(record.id) is False


def test_a_redelivered_message_never_runs_its_task_twice(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="count"))
    messages = receive(resources.queue_url)
    for _ in range(3):  # SQS at-least-once: the same message again (e.g. after a visibility timeout)
        failed, _ = deliver(runtime, resources, messages)
        assert failed == []
    assert CALLS[record.id] == 1
    # Powertools idempotency recorded it in the state table, under its own partition
    items = aws.client("dynamodb").query(
        TableName=TABLE, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": IDEMPOTENCY_PK}},
    )["Items"]
    assert any(json.loads(i["data"]["S"])["taskId"] == record.id for i in items if "data" in i)
    # the same task sent again as a different message: the record's conditional claim drops it
    aws.client("sqs").send_message(QueueUrl=resources.queue_url, MessageBody=messages[0]["Body"])
    failed, again = deliver(runtime, resources)
    assert failed == [] and len(again) == 1
    assert CALLS[record.id] == 1
    assert scheduler.get_task_status(record.id).status == TaskStatus.SUCCEEDED


def test_a_poison_message_fails_alone(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    first = scheduler.schedule_task(Task(type="count"))
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody="not json at all")
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody=json.dumps({"kind": "coafi.task", "taskId": "bad id!"}))
    second = scheduler.schedule_task(Task(type="count"))
    failed, messages = deliver(runtime, resources)
    assert len(messages) == 4
    poison = {m["MessageId"] for m in messages if "bad id" in m["Body"] or m["Body"] == "not json at all"}
    assert set(failed) == poison
    assert CALLS[first.id] == 1 and CALLS[second.id] == 1
    # a batch of nothing but poison: every record reported, no invocation error that would hide which
    only_poison = [m for m in messages if m["MessageId"] in poison]
    failed, _ = deliver(runtime, resources, only_poison)
    assert set(failed) == poison


class ThrottleOnce:
    """A Lambda client whose first invocation of ``function`` is throttled (the function never ran)."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.throttled = 0
        self.real = aws.client("lambda")

    def invoke(self, **kwargs: Any) -> Any:
        if kwargs["FunctionName"] == self.function and not self.throttled:
            self.throttled += 1
            response: Any = {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"},
                             "ResponseMetadata": {"HTTPStatusCode": 429}}
            raise ClientError(response, "Invoke")
        return self.real.invoke(**kwargs)


def test_a_throttled_task_fails_alone_and_runs_once_on_redelivery(
    cloud: InProcessCloud, scheduler: TaskScheduler, resources: TaskResources
) -> None:
    client = ThrottleOnce("gauge")
    runtime = DispatcherRuntime(TaskDispatcher(dispatcher_settings(cloud), lambda_client=client), concurrency=2)
    fine = scheduler.schedule_task(Task(type="count"))
    throttled = scheduler.schedule_task(Task(type="gauge"))
    failed, messages = deliver(runtime, resources)
    throttled_message = next(m for m in messages if throttled.id in m["Body"])
    assert failed == [throttled_message["MessageId"]]
    assert CALLS[fine.id] == 1
    assert scheduler.get_task_status(throttled.id).status == TaskStatus.DISPATCHED  # claim given back
    failed, _ = deliver(runtime, resources, [throttled_message])  # SQS redelivers it alone
    assert failed == [] and client.throttled == 1
    record = scheduler.get_task_status(throttled.id)
    assert record.status == TaskStatus.SUCCEEDED and record.attempts == 2


def test_an_action_that_fails_fails_its_task_and_is_not_redelivered(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="reject"))
    failed, _ = deliver(runtime, resources)
    assert failed == []
    done = scheduler.get_task_status(record.id)
    assert done.status == TaskStatus.FAILED and done.error is not None
    assert done.error.type == "Rejected" and "rejects everything" in done.error.message


def test_a_type_nothing_runs_fails_permanently(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="nobody-runs-this"))
    failed, _ = deliver(runtime, resources)
    assert failed == []
    done = scheduler.get_task_status(record.id)
    assert done.status == TaskStatus.FAILED and done.error is not None
    assert done.error.type == "NoWorkerForTask" and "nobody-runs-this" in done.error.message


def test_a_workflow_task_starts_its_state_machine_and_reports_the_execution(
    cloud: InProcessCloud, scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources
) -> None:
    record = scheduler.schedule_task(Task(type="workflow:diamond", payload={"x": 1}))
    failed, _ = deliver(runtime, resources)
    assert failed == []
    running = scheduler.get_task_status(record.id, refresh=False)
    assert running.status == TaskStatus.RUNNING and running.target == "workflow:diamond"
    assert running.executionArn is not None and running.executionArn.endswith(f":{record.id}")
    assert cloud.wait(running.executionArn).status == "SUCCEEDED"
    done = scheduler.get_task_status(record.id)
    assert done.status == TaskStatus.SUCCEEDED
    assert done.output["steps"]["d"]["output"]["saw"] == ["a", "b", "c"]


def test_workers_route_task_types_to_the_actions_that_run_them(dispatcher: TaskDispatcher) -> None:
    dispatcher.register_worker("greeter", ["greet-*"], target="echo")
    [result] = dispatcher.dispatch_tasks([Task(id="greet-1", type="greet-ada", payload={"name": "Ada"})])
    assert (result.outcome, result.target, result.worker) == ("succeeded", "echo", "greeter")
    dispatcher.register_worker("counter", ["greet-ada"], target="count")  # an exact capability beats a pattern
    dispatcher.register_worker("nowhere", ["greet-ada"], target="not-deployed")  # cannot run here: ignored
    [result] = dispatcher.dispatch_tasks([Task(id="greet-2", type="greet-ada")])
    assert (result.outcome, result.target, result.worker) == ("succeeded", "count", "counter")
    status = dispatcher.get_worker_status("greeter")
    assert (status.capabilities, status.target, status.dispatched, status.succeeded) == (["greet-*"], "echo", 1, 1)
    assert status.lastTaskId == "greet-1"
    for worker in ("greeter", "counter", "nowhere"):
        assert dispatcher.unregister_worker(worker) is True
    assert dispatcher.unregister_worker("greeter") is False
    with pytest.raises(WorkerNotFound):
        dispatcher.get_worker_status("greeter")
    [result] = dispatcher.dispatch_tasks([Task(id="greet-3", type="greet-ada")])
    assert result.outcome == "failed" and result.error is not None and result.error.type == "NoWorkerForTask"


def test_dispatch_tasks_bounds_concurrency_and_runs_higher_priority_first(dispatcher: TaskDispatcher) -> None:
    GAUGE.update(active=0, max=0)
    results = dispatcher.dispatch_tasks([Task(type="gauge") for _ in range(9)], concurrency=3)
    assert [r.outcome for r in results] == ["succeeded"] * 9
    assert 2 <= GAUGE["max"] <= 3
    STARTED.clear()
    tasks = [Task(id=f"prio-{p}", type="count", priority=p) for p in (0, 5, -1, 9)]
    results = dispatcher.dispatch_tasks(tasks, concurrency=1)
    assert [r.taskId for r in results] == [t.id for t in tasks]  # results in input order
    assert STARTED == ["prio-9", "prio-5", "prio-0", "prio--1"]
    with pytest.raises(ValueError):
        dispatcher.dispatch_tasks([], concurrency=0)


def local_scheduler(tmp_path: Path) -> tuple[Clock, LocalScheduler]:
    clock = Clock(tmp_path / "clock.json")
    return clock, LocalScheduler(aws.client, clock, tmp_path / "schedules.json")


def test_a_three_day_delay_reaches_the_queue_when_the_local_clock_moves(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources, tmp_path: Path
) -> None:
    record = scheduler.schedule_task_with_delay(Task(type="count"), 3 * 86400)
    clock, local = local_scheduler(tmp_path)
    assert [f for f in local.tick() if f.group == resources.schedule_group] == []
    assert receive(resources.queue_url) == []
    clock.advance(timedelta(days=3, minutes=1))
    fired = [f for f in local.tick() if f.group == resources.schedule_group]
    assert [(f.schedule, f.ok) for f in fired] == [(f"task-{record.id}", True)]
    failed, messages = deliver(runtime, resources)
    assert failed == [] and len(messages) == 1
    assert CALLS[record.id] == 1
    assert scheduler.get_task_status(record.id).status == TaskStatus.SUCCEEDED
    names = [s["Name"] for s in aws.client("scheduler").list_schedules(GroupName=resources.schedule_group)["Schedules"]]
    assert names == []  # deleted after running


def test_cron_occurrences_run_once_each_until_the_task_is_cancelled(
    scheduler: TaskScheduler, runtime: DispatcherRuntime, resources: TaskResources, tmp_path: Path
) -> None:
    record = scheduler.schedule_cron_task(Task(type="count"), "rate(6 hours)")
    clock, local = local_scheduler(tmp_path)
    clock.advance(timedelta(days=1, minutes=1))
    fired = [f for f in local.tick() if f.group == resources.schedule_group]
    assert len(fired) == 4 and all(f.ok for f in fired)
    failed, messages = deliver(runtime, resources)
    occurrences = sorted(json.loads(m["Body"])["occurrence"] for m in messages)
    assert failed == [] and len(set(occurrences)) == 4
    assert CALLS[record.id] == 4
    deliver(runtime, resources, messages[:1])  # a redelivered occurrence
    assert CALLS[record.id] == 4
    running = scheduler.get_task_status(record.id)
    assert running.status == TaskStatus.SCHEDULED and running.runCount == 4
    assert running.lastRunStatus == TaskStatus.SUCCEEDED and running.lastOccurrence in occurrences
    assert scheduler.cancel_task(record.id) is True
    late = dict(messages[0], MessageId="late", Body=json.dumps({**json.loads(messages[0]["Body"]),
                                                                 "occurrence": "2099-01-01T00:00:00Z"}))
    failed, _ = deliver(runtime, resources, [late])
    assert failed == [] and CALLS[record.id] == 4


def test_the_lambda_handler_reads_its_environment(
    cloud: InProcessCloud, scheduler: TaskScheduler, resources: TaskResources, repo_root: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dispatcher_settings(cloud)
    # as deployed: names and one prefix each (coafi.naming); the in-process cloud names its functions after the
    # actions and its state machines coafi-<workflow id>
    workflow_id, arn = next(iter(settings.workflow_arns.items()))
    monkeypatch.setenv("COAFI_ACTIONS", ",".join(settings.action_functions))
    monkeypatch.setenv("COAFI_ACTION_FUNCTION_PREFIX", "")
    monkeypatch.setenv("COAFI_WORKFLOW_IDS", ",".join(settings.workflow_arns))
    monkeypatch.setenv("COAFI_STATE_MACHINE_ARN_PREFIX", arn.removesuffix(workflow_id))
    monkeypatch.setenv("COAFI_DISPATCH_CONCURRENCY", "2")
    spec = importlib.util.spec_from_file_location("coafi_dispatcher_handler",
                                                  repo_root / "functions" / "dispatcher" / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = scheduler.schedule_task(Task(type="count"))
    messages = receive(resources.queue_url)
    response = module.handler(sqs_event(messages, resources.queue_arn), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert module.runtime().concurrency == 2
    targets = module.runtime().dispatcher.targets
    assert (targets.actions, targets.workflows) == (settings.action_functions, settings.workflow_arns)
    assert CALLS[record.id] == 1
