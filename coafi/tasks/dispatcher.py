"""The design's ``TaskDispatcher``: takes tasks off the queue and runs them exactly where they belong.

For each task message:

1. **claim** - one conditional write: a SCHEDULED/DELAYED task becomes DISPATCHED under a fresh claim token and
   a lease (a cron task's occurrence is claimed once per occurrence). A CANCELLED task is dropped here, never
   run; a task already run is dropped as a duplicate; one held by a live dispatcher is retried later.
2. **route** - a registered worker whose capabilities match the type (exact before pattern), else the action
   or workflow the type names. Only what this deployment lets the dispatcher run counts (``Targets``: the
   action functions and state machines its IAM role may invoke/start). Nothing fits: FAILED (NoWorkerForTask).
3. **run** - an action is invoked synchronously with a step event (its ``@action`` wrapper records the attempt
   under execution id ``task:<taskId>``) and the task ends SUCCEEDED with the output or FAILED with the
   action's error; a workflow is started (execution name = the task id, so a repeated start is a no-op) and the
   task is RUNNING until ``get_task_status`` sees the execution end.

Throttling and service errors give the claim back and re-raise: the message fails alone and SQS redelivers it.
The Lambda entry point (``DispatcherRuntime``) adds Powertools batch processing with partial batch failures and
Powertools idempotency (on the state table, keyed by task id and occurrence) around this.
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from coafi import aws
from coafi.tasks.errors import NoWorkerForTask, TaskBusy
from coafi.tasks.models import (
    WORKFLOW_PREFIX,
    DispatchResult,
    Task,
    TaskErrorInfo,
    TaskMessage,
    TaskRecord,
    TaskStatus,
    Worker,
)
from coafi.tasks.settings import DispatcherSettings
from coafi.tasks.store import TaskStore, iso
from coafi.tasks.workers import WorkerRegistry

#: The workflow id the step events of task-run actions carry (their records live under ``task:<taskId>``).
TASKS_WORKFLOW_ID = "coafi-tasks"
DEFAULT_LEASE_SECONDS = 60.0
MAX_EXECUTION_NAME = 80
#: Lambda errors that mean "the function did not run, try again later".
_RETRYABLE_LAMBDA = {"TooManyRequestsException", "ServiceException", "EC2ThrottledException",
                     "ResourceConflictException", "ResourceNotReadyException", "ThrottlingException"}
_PERMANENT_SFN = {"StateMachineDoesNotExist", "StateMachineDeleting", "InvalidArn", "InvalidExecutionInput",
                  "InvalidName", "ValidationException"}


@dataclass(frozen=True)
class Targets:
    """What this dispatcher may run: action name -> function name/ARN, workflow id -> state machine ARN."""

    actions: Mapping[str, str]
    workflows: Mapping[str, str]

    @classmethod
    def from_settings(cls, settings: DispatcherSettings) -> Targets:
        return cls(dict(settings.action_functions), dict(settings.workflow_arns))

    def resolve(self, target: str) -> tuple[Literal["action", "workflow"], str] | None:
        if target.startswith(WORKFLOW_PREFIX):
            arn = self.workflows.get(target.removeprefix(WORKFLOW_PREFIX))
            return ("workflow", arn) if arn else None
        function = self.actions.get(target)
        return ("action", function) if function else None

    def describe(self) -> str:
        actions = ", ".join(sorted(self.actions)) or "none"
        workflows = ", ".join(f"workflow:{w}" for w in sorted(self.workflows)) or "none"
        return f"actions: {actions}; workflows: {workflows}"


@dataclass(frozen=True)
class Destination:
    """Where a task runs: ``target`` (action name or ``workflow:<id>``), resolved to a function or state machine,
    and the registered worker it was routed through (None: the type named the target itself)."""

    target: str
    kind: Literal["action", "workflow"]
    resource: str
    worker: str | None = None


class _Retry(Exception):
    """A retryable failure of the run itself; the claim is given back and the original error re-raised."""


class TaskDispatcher:
    """Claims, routes and runs tasks; the worker registry's front door (``register_worker`` & co.)."""

    def __init__(self, settings: DispatcherSettings, *, targets: Targets | None = None,
                 store: TaskStore | None = None, registry: WorkerRegistry | None = None,
                 now: Callable[[], datetime] | None = None, lambda_client: Any = None) -> None:
        self.settings = settings
        self.targets = targets or Targets.from_settings(settings)
        self.store = store or TaskStore(settings.table_name, retention_days=settings.retention_days)
        self.registry = registry or WorkerRegistry(self.store)
        self._now = now or (lambda: datetime.now(UTC))
        self._lambda = lambda_client

    # -- workers --------------------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, capabilities: Iterable[str], *, target: str | None = None) -> Worker:
        return self.registry.register_worker(worker_id, capabilities, target=target)

    def unregister_worker(self, worker_id: str) -> bool:
        return self.registry.unregister_worker(worker_id)

    def get_worker_status(self, worker_id: str) -> Worker:
        return self.registry.get_worker_status(worker_id)

    registerWorker = register_worker
    unregisterWorker = unregister_worker
    getWorkerStatus = get_worker_status

    # -- routing --------------------------------------------------------------------------------------------
    def route(self, task: Task) -> Destination:
        """The registered worker for the task's type whose target this deployment can run (best match; among
        equals, spread by task id), else the action or workflow the type names."""
        matches = [(rank, w) for rank, w in self.registry.matching(task.type) if self.targets.resolve(w.target)]
        if matches:
            best = [w for rank, w in matches if rank == matches[0][0]]
            worker = best[zlib.crc32(task.id.encode()) % len(best)]
            kind, resource = self.targets.resolve(worker.target) or ("action", "")
            return Destination(worker.target, kind, resource, worker.id)
        resolved = self.targets.resolve(task.type)
        if resolved is None:
            raise NoWorkerForTask(f"no worker, action or workflow of this deployment runs tasks of type "
                                  f"'{task.type}' ({self.targets.describe()})")
        return Destination(task.type, resolved[0], resolved[1])

    # -- dispatching ----------------------------------------------------------------------------------------
    def dispatch_tasks(self, tasks: Iterable[Task | Mapping[str, Any]], concurrency: int = 4) -> list[DispatchResult]:
        """Run tasks now, at most ``concurrency`` at a time, higher priority first; results in input order.
        Tasks without a record get one (as if they had come off the queue). A task whose run failed for a
        retryable reason comes back ``failed`` with that error and can be dispatched again."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        parsed = [t if isinstance(t, Task) else Task.model_validate(t) for t in tasks]
        order = sorted(range(len(parsed)), key=lambda i: -parsed[i].priority)
        results: list[DispatchResult | None] = [None] * len(parsed)

        def run(index: int) -> None:
            task = parsed[index]
            try:
                results[index] = self.dispatch_message(TaskMessage(kind="coafi.task", taskId=task.id, task=task))
            except Exception as exc:  # reported per task, the others go on
                results[index] = DispatchResult(taskId=task.id, outcome="failed", reason="not run",
                                                error=TaskErrorInfo(type=type(exc).__name__, message=str(exc)))

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(run, order))
        return [r for r in results if r is not None]

    dispatchTasks = dispatch_tasks

    def dispatch_message(self, message: TaskMessage, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
                         ) -> DispatchResult:
        """Claim, route and run the task of one queue message (see the module docstring)."""
        now = self._now()
        token = uuid.uuid4().hex
        lease_until = now + timedelta(seconds=max(lease_seconds, 1.0))
        occurrence = message.occurrence
        if occurrence is not None:
            record = self.store.claim_occurrence(message.taskId, occurrence, token, now=now, lease_until=lease_until)
            if record is None:
                return self._not_claimed(message, self.store.get(message.taskId))
        else:
            record = self.store.claim(message.taskId, token, now=now, lease_until=lease_until)
            if record is None:
                current = self.store.get(message.taskId)
                if current is None and message.task is not None:
                    record = self.store.adopt(message.task, token, now=now, lease_until=lease_until)
                    current = None if record is not None else self.store.get(message.taskId)
                if record is None:
                    return self._not_claimed(message, current)
        return self._run(record, token, occurrence)

    def _not_claimed(self, message: TaskMessage, current: TaskRecord | None) -> DispatchResult:
        def dropped(reason: str) -> DispatchResult:
            return DispatchResult(taskId=message.taskId, outcome="dropped", reason=reason,
                                  occurrence=message.occurrence)

        if current is None:
            return dropped("no such task: the message carries no task and there is no record of it")
        if current.status == TaskStatus.CANCELLED:
            return dropped("cancelled")
        if message.occurrence is not None:
            if current.lastOccurrence == message.occurrence and current.lastRunStatus == TaskStatus.DISPATCHED:
                raise TaskBusy(f"task {current.id} occurrence {message.occurrence} is being dispatched")
            if current.lastOccurrence == message.occurrence:
                return dropped("occurrence already dispatched")
            return dropped(f"not a cron task that is SCHEDULED (status {current.status.value})")
        if current.status == TaskStatus.DISPATCHED:
            raise TaskBusy(f"task {current.id} is being dispatched by another dispatcher")
        return dropped(f"already {current.status.value}")

    def _run(self, record: TaskRecord, token: str, occurrence: str | None) -> DispatchResult:
        task = record.task
        try:
            destination = self.route(task)
        except NoWorkerForTask as exc:
            error = TaskErrorInfo(type="NoWorkerForTask", message=str(exc))
            self._finish(record, token, occurrence, TaskStatus.FAILED, error=error)
            return DispatchResult(taskId=task.id, outcome="failed", error=error, occurrence=occurrence)
        try:
            if destination.kind == "workflow":
                return self._start_workflow(record, token, occurrence, destination)
            return self._invoke_action(record, token, occurrence, destination)
        except _Retry as retry:
            self.store.release(task.id, token, now=self._now())
            cause = retry.__cause__
            raise (cause if cause is not None else retry) from None

    def _start_workflow(self, record: TaskRecord, token: str, occurrence: str | None,
                        destination: Destination) -> DispatchResult:
        task = record.task
        name = execution_name(task.id, occurrence)
        sfn = aws.client("stepfunctions")
        try:
            arn = str(sfn.start_execution(stateMachineArn=destination.resource, name=name,
                                          input=json.dumps(task.payload))["executionArn"])
        except ClientError as exc:
            code = _code(exc)
            if code == "ExecutionAlreadyExists":  # started before (a crash after the start): the same execution
                arn = existing_execution_arn(destination.resource, name)
            elif code in _PERMANENT_SFN:
                error = TaskErrorInfo(type=code, message=_message(exc))
                self._finish(record, token, occurrence, TaskStatus.FAILED, destination=destination, error=error)
                return DispatchResult(taskId=task.id, outcome="failed", target=destination.target,
                                      worker=destination.worker, error=error, occurrence=occurrence)
            else:
                raise _Retry() from exc
        except (ConnectionError, ReadTimeoutError) as exc:
            raise _Retry() from exc  # StartExecution with the same name is idempotent: safe to repeat
        now = self._now()
        if occurrence is not None:
            self.store.occurrence_started(task.id, occurrence, token, execution_arn=arn, target=destination.target,
                                          worker=destination.worker, now=now)
        else:
            self.store.started(task.id, token, execution_arn=arn, target=destination.target,
                               worker=destination.worker, now=now)
        if destination.worker:
            self.store.count_worker_task(destination.worker, task.id, None, now)
        return DispatchResult(taskId=task.id, outcome="started", target=destination.target,
                              worker=destination.worker, executionArn=arn, occurrence=occurrence)

    def _invoke_action(self, record: TaskRecord, token: str, occurrence: str | None,
                       destination: Destination) -> DispatchResult:
        task = record.task
        action = destination.target
        event = step_event(task, action, attempt=max(record.attempts - 1, 0), occurrence=occurrence,
                           now=self._now())
        output: Any = None
        error: TaskErrorInfo | None = None
        try:
            response = self._lambda_client().invoke(FunctionName=destination.resource,
                                                    InvocationType="RequestResponse",
                                                    Payload=json.dumps(event).encode())
            body = response["Payload"].read()
            parsed = json.loads(body) if body else None
            if response.get("FunctionError"):
                details = parsed if isinstance(parsed, dict) else {}
                error = TaskErrorInfo(type=str(details.get("errorType") or response["FunctionError"]),
                                      message=str(details.get("errorMessage") or body.decode(errors="replace")))
            else:
                output = parsed
        except ReadTimeoutError:
            # It may still be running: never invoke it twice, record why it is not known to have succeeded.
            error = TaskErrorInfo(type="ActionTimeout", message=f"action {action} did not answer within "
                                  f"{self.settings.invoke_timeout:g} s")
        except ClientError as exc:
            if _code(exc) in _RETRYABLE_LAMBDA or _status(exc) >= 500:
                raise _Retry() from exc
            error = TaskErrorInfo(type=_code(exc), message=_message(exc))
        except ConnectionError as exc:
            raise _Retry() from exc
        status = TaskStatus.FAILED if error is not None else TaskStatus.SUCCEEDED
        self._finish(record, token, occurrence, status, destination=destination, output=output, error=error)
        if destination.worker:
            self.store.count_worker_task(destination.worker, task.id, error is None, self._now())
        return DispatchResult(taskId=task.id, outcome="failed" if error else "succeeded", target=action,
                              worker=destination.worker, error=error, occurrence=occurrence)

    def _finish(self, record: TaskRecord, token: str, occurrence: str | None, status: TaskStatus, *,
                destination: Destination | None = None, output: Any = None,
                error: TaskErrorInfo | None = None) -> None:
        target = destination.target if destination else None
        worker = destination.worker if destination else None
        if occurrence is not None:
            self.store.occurrence_finished(record.id, occurrence, token, status, now=self._now(), target=target,
                                           worker=worker, output=output, error=error)
        else:
            self.store.finish(record.id, token, status, now=self._now(), target=target, worker=worker,
                              output=output, error=error)

    def _lambda_client(self) -> Any:
        """A Lambda client that never retries an invocation by itself (a retried read timeout would run the
        action twice) and waits ``invoke_timeout`` for the answer."""
        if self._lambda is None:
            from botocore.config import Config

            config = Config(retries={"total_max_attempts": 1}, connect_timeout=5,
                            read_timeout=self.settings.invoke_timeout)
            self._lambda = aws.new_client("lambda", config)
        return self._lambda


def step_event(task: Task, action: str, *, attempt: int, occurrence: str | None, now: datetime) -> dict[str, Any]:
    """The step event an action receives when a task runs it (docs/ARCHITECTURE.md, "Step event"): the payload
    is both ``input`` and (when an object) ``parameters``; ``task`` tells the action it runs as a task."""
    execution_id = f"task:{task.id}" + (f"@{occurrence}" if occurrence else "")
    return {
        "context": {"executionId": execution_id, "workflowId": TASKS_WORKFLOW_ID, "workflowVersion": "",
                    "stepId": task.id, "stepName": task.type, "action": action, "attempt": attempt,
                    "enteredAt": iso(now)},
        "parameters": task.payload if isinstance(task.payload, dict) else {},
        "input": task.payload,
        "steps": {},
        "task": {"id": task.id, "type": task.type, "priority": task.priority, "metadata": task.metadata,
                 "occurrence": occurrence},
    }


def execution_name(task_id: str, occurrence: str | None) -> str:
    """The task id (a cron occurrence appended): a repeated start of the same run is the same execution."""
    if occurrence is None:
        return task_id
    stamp = re.sub(r"[^0-9A-Za-z]", "", occurrence)
    return f"{task_id}-{stamp}"[:MAX_EXECUTION_NAME]


def existing_execution_arn(state_machine_arn: str, name: str) -> str:
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", type(exc).__name__))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", str(exc)))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
