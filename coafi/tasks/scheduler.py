"""The design's ``TaskScheduler``: run a task now, after a delay, or on a cron, on SQS and EventBridge Scheduler.

Which way a task takes is invisible to the caller:

- now: an SQS message on the task queue (SCHEDULED);
- a delay up to 900 s: an SQS message with ``DelaySeconds`` (DELAYED);
- a longer delay: a one-time Scheduler ``at()`` schedule in the app's group with ``ActionAfterCompletion:
  DELETE``, targeting the task queue, with retries and the dead-letter queue (DELAYED);
- a cron: a Scheduler ``cron()``/``rate()`` schedule in the app's group with a flexible window, its own retry
  policy and the dead-letter queue, targeting the task queue (SCHEDULED until cancelled).

The record is written first (conditional on the id being new), then the message or schedule; when the queue or
Scheduler refuses, the record says FAILED and ``TaskSchedulingError`` is raised. Cancelling marks the record
CANCELLED (only from SCHEDULED/DELAYED) and deletes the schedule; a message already on the queue is dropped by
the dispatcher, never run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.exceptions import ClientError

from coafi import aws
from coafi.tasks.errors import TaskConfigurationError, TaskNotFound, TaskSchedulingError
from coafi.tasks.models import (
    MAX_QUEUE_DELAY_SECONDS,
    Route,
    Task,
    TaskErrorInfo,
    TaskRecord,
    TaskStatus,
    task_message,
)
from coafi.tasks.settings import TaskSettings
from coafi.tasks.store import TaskStore
from coafi.telemetry.direct import increment as _count_metric

SCHEDULE_PREFIX = "task-"
#: SQS's message size limit, minus room for attributes.
MAX_MESSAGE_BYTES = 250 * 1024
SQS_BATCH = 10
DEFAULT_CRON_WINDOW_MINUTES = 5
DEFAULT_CRON_RETRY_ATTEMPTS = 3
DEFAULT_CRON_MAX_EVENT_AGE = 3600
#: A one-time task is worth more patience than one cron occurrence (the next one comes anyway).
AT_RETRY_ATTEMPTS = 20
AT_MAX_EVENT_AGE = 86400
OCCURRENCE_PLACEHOLDER = "<aws.scheduler.scheduled-time>"
_THREADS = 8
_CRON_BODY = re.compile(r"^(cron|rate)\((.+)\)$")

TaskLike = Task | Mapping[str, Any]


def schedule_name(task_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{task_id}"


def as_task(task: TaskLike) -> Task:
    return task if isinstance(task, Task) else Task.model_validate(task)


def normalize_expression(expression: str, timezone: str = "UTC") -> str:
    """``cron(...)`` / ``rate(...)`` as given, or six bare cron fields wrapped in ``cron(...)``; checked the way
    EventBridge Scheduler reads it (the local scheduler's parser), so typos fail here, not at the first run."""
    text = " ".join(expression.split())
    if text.startswith("at("):
        raise ValueError("at() is a one-time schedule: use schedule_task_with_delay for one-time tasks")
    if not _CRON_BODY.match(text):
        text = f"cron({text})"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)") from None
    try:  # not in the Lambda layer (coafi.local stays on developers' machines): Scheduler checks it there
        from coafi.local.localstack_plugin.coafi_localstack_plugin.schedules import Expression
    except ImportError:
        return text
    Expression.parse(text, timezone)
    return text


@dataclass
class BatchResult:
    """``schedule_tasks``: the tasks on their way (input order) and, by task id, why the others are not."""

    scheduled: list[TaskRecord] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class TaskScheduler:
    """Schedules tasks on the app's task queue and schedule group. ``now`` is injectable for tests."""

    def __init__(self, settings: TaskSettings, *, store: TaskStore | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.store = store or TaskStore(settings.table_name, retention_days=settings.retention_days)
        self._now = now or (lambda: datetime.now(UTC))
        self._queue_arns: tuple[str, str] | None = None

    # -- one task -------------------------------------------------------------------------------------------
    def schedule_task(self, task: TaskLike) -> TaskRecord:
        """Run ``task`` as soon as the dispatcher gets to it."""
        return self.schedule_task_with_delay(task, 0)

    def schedule_task_with_delay(self, task: TaskLike, delay_seconds: float) -> TaskRecord:
        """Run ``task`` once, ``delay_seconds`` from now (SQS up to 900 s, a Scheduler ``at()`` beyond)."""
        task = as_task(task)
        delay = _delay(delay_seconds)
        now = self._now()
        if delay <= MAX_QUEUE_DELAY_SECONDS:
            return self._enqueue(task, delay, now)
        return self._schedule_at(task, now + timedelta(seconds=delay), now)

    def schedule_cron_task(self, task: TaskLike, cron: str, *, timezone: str = "UTC",
                           window_minutes: int = DEFAULT_CRON_WINDOW_MINUTES,
                           retry_attempts: int = DEFAULT_CRON_RETRY_ATTEMPTS,
                           max_event_age_seconds: int = DEFAULT_CRON_MAX_EVENT_AGE,
                           start: datetime | None = None, end: datetime | None = None) -> TaskRecord:
        """Run ``task`` on every occurrence of ``cron`` (``cron(...)``, six bare cron fields, or ``rate(...)``)
        until cancelled. ``window_minutes``: Scheduler's flexible time window (0 = off); ``retry_attempts`` and
        ``max_event_age_seconds``: its retry policy; occurrences it cannot deliver go to the dead-letter queue."""
        task = as_task(task)
        expression = normalize_expression(cron, timezone)
        if not 0 <= window_minutes <= 1440:
            raise ValueError("window_minutes: 0 (off) to 1440")
        if not 0 <= retry_attempts <= 185:
            raise ValueError("retry_attempts: 0 to 185")
        if not 60 <= max_event_age_seconds <= 86400:
            raise ValueError("max_event_age_seconds: 60 to 86400")
        self._check_message_size(task)
        now = self._now()
        name = schedule_name(task.id)
        record = self.store.create(task, status=TaskStatus.SCHEDULED, route=Route.CRON, now=now, cron=expression,
                                   timezone=timezone, schedule_name=name)
        window = ({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": window_minutes} if window_minutes
                  else {"Mode": "OFF"})
        extra: dict[str, Any] = {}
        if start is not None:
            extra["StartDate"] = start
        if end is not None:
            extra["EndDate"] = end
        self._create_schedule(
            record, name=name, expression=expression, timezone=timezone, window=window,
            body=task_message(task.id, occurrence=OCCURRENCE_PLACEHOLDER),
            retry={"MaximumRetryAttempts": retry_attempts, "MaximumEventAgeInSeconds": max_event_age_seconds},
            description=f"COAFI cron task {task.id}: {task.type}", **extra,
        )
        _count_metric("TaskScheduled")
        return record

    def cancel_task(self, task_id: str) -> bool:
        """Cancel a task that has not been dispatched yet (or a cron task). True when this call cancelled it;
        False when there is no such task or it is past that point (dispatched, finished, already cancelled)."""
        record = self.store.cancel(task_id, self._now())
        if record is None:
            return False
        if record.scheduleName:
            self._delete_schedule(record.scheduleName)
        return True

    def get_task_status(self, task_id: str, *, refresh: bool = True) -> TaskRecord:
        """The task's record. A workflow task shows RUNNING until its execution ends; with ``refresh`` the
        execution is looked at and a finished one recorded (SUCCEEDED/FAILED) before answering."""
        record = self.store.get(task_id)
        if record is None:
            raise TaskNotFound(task_id)
        running = record.status == TaskStatus.RUNNING or record.lastRunStatus == TaskStatus.RUNNING
        if refresh and running and record.executionArn:
            record = self._refresh_workflow(record)
        return record

    def list_tasks(self, status: TaskStatus | str | None = None, limit: int = 50) -> list[TaskRecord]:
        """The newest tasks (of one status), newest first."""
        wanted = TaskStatus(str(status).upper()) if status is not None else None
        return self.store.list_tasks(wanted, limit)

    # -- batches --------------------------------------------------------------------------------------------
    def schedule_tasks(self, tasks: Iterable[TaskLike], delay_seconds: float = 0) -> BatchResult:
        """Schedule many tasks with the same delay: records written concurrently, queue messages sent ten per
        ``SendMessageBatch``, long delays as one schedule each. A task that fails does not stop the others."""
        parsed = [as_task(t) for t in tasks]
        delay = _delay(delay_seconds)
        result = BatchResult()
        if not parsed:
            return result
        ids = [t.id for t in parsed]
        if len(set(ids)) != len(ids):
            raise ValueError("schedule_tasks: task ids repeat within the batch")
        if delay > MAX_QUEUE_DELAY_SECONDS:
            with ThreadPoolExecutor(max_workers=_THREADS) as pool:
                outcomes = list(pool.map(lambda t: self._try(lambda: self.schedule_task_with_delay(t, delay)), parsed))
            for task, outcome in zip(parsed, outcomes, strict=True):
                _collect(result, task.id, outcome)
            return result
        now = self._now()
        status = TaskStatus.DELAYED if delay else TaskStatus.SCHEDULED
        run_at = now + timedelta(seconds=delay)

        def create(task: Task) -> TaskRecord | str:
            return self._try(lambda: self._create_queued(task, status, run_at, now))

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            created = list(pool.map(create, parsed))
        records = {task.id: outcome for task, outcome in zip(parsed, created, strict=True)
                   if isinstance(outcome, TaskRecord)}
        sent_errors = self._send_batch([t for t in parsed if t.id in records], math.ceil(delay))
        for task, outcome in zip(parsed, created, strict=True):
            if isinstance(outcome, str):
                result.failed[task.id] = outcome
            elif task.id in sent_errors:
                result.failed[task.id] = sent_errors[task.id]
            else:
                result.scheduled.append(outcome)
        if result.scheduled:
            _count_metric("TaskScheduled", len(result.scheduled))
        return result

    def cancel_tasks(self, task_ids: Iterable[str]) -> dict[str, bool]:
        """``cancel_task`` for each id, concurrently; by id, whether it was cancelled."""
        ids = list(dict.fromkeys(task_ids))
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            return dict(zip(ids, pool.map(self.cancel_task, ids), strict=True))

    # design names
    scheduleTask = schedule_task
    scheduleTaskWithDelay = schedule_task_with_delay
    scheduleCronTask = schedule_cron_task
    cancelTask = cancel_task
    getTaskStatus = get_task_status
    scheduleTasks = schedule_tasks
    cancelTasks = cancel_tasks

    # -- queue ----------------------------------------------------------------------------------------------
    def _create_queued(self, task: Task, status: TaskStatus, run_at: datetime, now: datetime) -> TaskRecord:
        self._check_message_size(task)
        return self.store.create(task, status=status, route=Route.QUEUE, now=now, run_at=run_at)

    def _enqueue(self, task: Task, delay: int, now: datetime) -> TaskRecord:
        status = TaskStatus.DELAYED if delay else TaskStatus.SCHEDULED
        record = self._create_queued(task, status, now + timedelta(seconds=delay), now)
        try:
            aws.client("sqs").send_message(QueueUrl=self.settings.queue_url, MessageBody=_body(task),
                                           DelaySeconds=delay, MessageAttributes=_attributes(task))
        except ClientError as exc:
            self._failed(record, exc)
        _count_metric("TaskScheduled")
        return record

    def _send_batch(self, tasks: Sequence[Task], delay: int) -> dict[str, str]:
        errors: dict[str, str] = {}
        sqs = aws.client("sqs")
        for start in range(0, len(tasks), SQS_BATCH):
            chunk = tasks[start:start + SQS_BATCH]
            entries = [{"Id": str(i), "MessageBody": _body(t), "DelaySeconds": delay,
                        "MessageAttributes": _attributes(t)} for i, t in enumerate(chunk)]
            try:
                response = sqs.send_message_batch(QueueUrl=self.settings.queue_url, Entries=entries)
                failures = {int(f["Id"]): f"{f.get('Code')}: {f.get('Message', '')}"
                            for f in response.get("Failed", [])}
            except ClientError as exc:
                failures = {i: _describe(exc) for i in range(len(chunk))}
            for index, message in failures.items():
                task = chunk[index]
                errors[task.id] = message
                self.store.fail_pending(task.id, TaskErrorInfo(type="EnqueueFailed", message=message), self._now())
        return errors

    @staticmethod
    def _check_message_size(task: Task) -> None:
        size = len(_body(task).encode())
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"task {task.id}: {size} bytes as a queue message; at most {MAX_MESSAGE_BYTES} "
                             "(keep large payloads in S3 and pass their key)")

    # -- Scheduler ------------------------------------------------------------------------------------------
    def _schedule_at(self, task: Task, when: datetime, now: datetime) -> TaskRecord:
        when = _whole_second_after(when)
        name = schedule_name(task.id)
        self._check_message_size(task)
        record = self.store.create(task, status=TaskStatus.DELAYED, route=Route.AT, now=now, run_at=when,
                                   schedule_name=name)
        self._create_schedule(
            record, name=name, expression=f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})", timezone="UTC",
            window={"Mode": "OFF"}, body=task_message(task.id),
            retry={"MaximumRetryAttempts": AT_RETRY_ATTEMPTS, "MaximumEventAgeInSeconds": AT_MAX_EVENT_AGE},
            description=f"COAFI task {task.id}: {task.type}", ActionAfterCompletion="DELETE",
        )
        _count_metric("TaskScheduled")
        return record

    def _create_schedule(self, record: TaskRecord, *, name: str, expression: str, timezone: str,
                         window: dict[str, Any], body: dict[str, Any], retry: dict[str, int], description: str,
                         **extra: Any) -> None:
        try:
            role = self._scheduler_role()
            queue_arn, dead_letter_arn = self._queue_arns_or_lookup()
        except TaskConfigurationError as exc:
            self.store.fail_pending(record.id, TaskErrorInfo(type="TaskConfigurationError", message=str(exc)),
                                    self._now())
            raise
        target: dict[str, Any] = {"Arn": queue_arn, "RoleArn": role, "Input": json.dumps(body),
                                  "RetryPolicy": retry}
        if dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
        try:
            aws.client("scheduler").create_schedule(
                Name=name, GroupName=self.settings.schedule_group, ScheduleExpression=expression,
                ScheduleExpressionTimezone=timezone, FlexibleTimeWindow=window, State="ENABLED",
                Description=description[:512], Target=target, ClientToken=record.id, **extra,
            )
        except ClientError as exc:
            self._failed(record, exc)

    def _delete_schedule(self, name: str) -> None:
        try:
            aws.client("scheduler").delete_schedule(Name=name, GroupName=self.settings.schedule_group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise  # gone already: an at() schedule deletes itself once it has fired

    def _scheduler_role(self) -> str:
        if not self.settings.scheduler_role_arn:
            raise TaskConfigurationError(
                "delays over 15 minutes and cron tasks need the Scheduler execution role: set "
                "COAFI_TASK_SCHEDULER_ROLE_ARN or use TaskSettings.from_stack() (stack output TaskSchedulerRoleArn)"
            )
        return self.settings.scheduler_role_arn

    def _queue_arns_or_lookup(self) -> tuple[str, str]:
        """The task queue's ARN and its dead-letter queue's (from the queue's redrive policy when not set)."""
        if self._queue_arns is None:
            queue_arn, dead_letter_arn = self.settings.queue_arn, self.settings.dead_letter_arn
            if not queue_arn or not dead_letter_arn:
                attributes = aws.client("sqs").get_queue_attributes(
                    QueueUrl=self.settings.queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])["Attributes"]
                queue_arn = queue_arn or attributes["QueueArn"]
                redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
                dead_letter_arn = dead_letter_arn or str(redrive.get("deadLetterTargetArn", ""))
            self._queue_arns = (queue_arn, dead_letter_arn)
        return self._queue_arns

    # -- helpers --------------------------------------------------------------------------------------------
    def _failed(self, record: TaskRecord, exc: ClientError) -> None:
        message = _describe(exc)
        self.store.fail_pending(record.id, TaskErrorInfo(type="EnqueueFailed", message=message), self._now())
        raise TaskSchedulingError(f"task {record.id} could not be scheduled: {message}") from exc

    @staticmethod
    def _try(call: Callable[[], TaskRecord]) -> TaskRecord | str:
        try:
            return call()
        except (ClientError, ValueError, TaskSchedulingError, TaskConfigurationError) as exc:
            return str(exc)
        except Exception as exc:  # TaskAlreadyExists and the like: reported per task
            return f"{type(exc).__name__}: {exc}"

    def _refresh_workflow(self, record: TaskRecord) -> TaskRecord:
        try:
            description = aws.client("stepfunctions").describe_execution(executionArn=record.executionArn)
        except ClientError:
            return record  # not visible from here (permissions, another account): report what is recorded
        status = description.get("status")
        if status == "RUNNING" or status is None or status == "PENDING_REDRIVE":
            return record
        now = self._now()
        if status == "SUCCEEDED":
            output = json.loads(description["output"]) if description.get("output") else None
            updated = self.store.workflow_finished(record, TaskStatus.SUCCEEDED, now=now, output=output)
        else:
            error = TaskErrorInfo(type=str(description.get("error") or status),
                                  message=str(description.get("cause") or f"execution {status}"))
            updated = self.store.workflow_finished(record, TaskStatus.FAILED, now=now, error=error)
        return updated or self.store.get(record.id) or record


def _delay(delay_seconds: float) -> int:
    if not isinstance(delay_seconds, int | float) or math.isnan(delay_seconds) or math.isinf(delay_seconds):
        raise ValueError(f"delay_seconds must be a number of seconds, not {delay_seconds!r}")
    if delay_seconds < 0:
        raise ValueError("delay_seconds cannot be negative")
    return math.ceil(delay_seconds)


def _whole_second_after(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=0) + timedelta(seconds=1 if moment.microsecond else 0)


def _body(task: Task) -> str:
    return json.dumps(task_message(task.id, task), separators=(",", ":"))


def _attributes(task: Task) -> dict[str, Any]:
    return {"taskType": {"DataType": "String", "StringValue": task.type},
            "priority": {"DataType": "Number", "StringValue": str(task.priority)}}


def _describe(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"


def _collect(result: BatchResult, task_id: str, outcome: TaskRecord | str) -> None:
    if isinstance(outcome, TaskRecord):
        result.scheduled.append(outcome)
    else:
        result.failed[task_id] = outcome
