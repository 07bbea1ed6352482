"""completeTask / failTask / signalWorkflow: the engine API of the waiting steps (docs/waits.md).

- A ``callback`` step waits with ``.waitForTaskToken``; its token is stored against (execution, step), so
  ``complete_task`` / ``fail_task`` take either the raw token or the execution id and step id.
- A ``signal`` step waits for a named signal. ``signal_workflow`` first buffers the signal durably, then hands
  buffered signals to waiting steps in order; a step that starts waiting takes a buffered signal at once. Both
  sides change the (execution, signal name) channel only by conditional writes (``coafi.engine.wait_store``),
  so each signal is delivered exactly once whichever side comes first, and none is lost.

Results and payloads become the step's output (``steps.<stepId>.output``); Step Functions takes at most
256 KiB, checked before anything is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coafi.definitions.waits import SIGNAL_NAME_PATTERN
from coafi.engine.wait_store import Delivery, DuplicateSignal, Waiter, WaitRecord, WaitStore
from coafi.errors import CoafiError
from coafi.state.codec import dumps, now_iso
from coafi.state.models import WorkflowState
from coafi.state.store import StateStore

#: Step Functions' limit on a task's output (SendTaskSuccess ``output``): 256 KiB of UTF-8 JSON.
MAX_OUTPUT_BYTES = 262_144
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32_768
MAX_TOKEN_CHARS = 2048
SIGNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}$"
EVENT_SOURCE = "coafi"
TASK_TOKEN_ISSUED = "TaskTokenIssued"
#: Step Functions' answers for a token that can no longer be completed.
_DEAD_TOKEN_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


# == errors =================================================================================================
class WaitError(CoafiError):
    """Base of the errors of completeTask / failTask / signalWorkflow."""


class UnknownExecution(WaitError, LookupError):
    def __init__(self, execution_id: str) -> None:
        hint = "" if execution_id.startswith("arn:") else (
            "; pass the execution ARN (arn:aws:states:<region>:<account>:execution:<machine>:<name>)")
        super().__init__(f"no execution '{execution_id}' is recorded (never started, deleted or expired){hint}")
        self.execution_id = execution_id


class ExecutionFinished(WaitError):
    """The execution has ended: nothing in it waits any more."""

    def __init__(self, state: WorkflowState, what: str) -> None:
        ended = f" at {state.endTime.isoformat()}" if state.endTime else ""
        super().__init__(f"execution '{state.executionId}' already ended {state.status}{ended}; {what}")
        self.execution_id = state.executionId
        self.status = state.status


class NotWaiting(WaitError, LookupError):
    """The step is not waiting (never started to, not a waiting step, or done waiting)."""


class TaskTokenNotActive(WaitError):
    """Step Functions refused the token: the task completed already, timed out, or its execution ended."""


# == inputs and results =====================================================================================
def _json_size(value: Any) -> int:
    return len(dumps(value).encode())


def _check_size(value: Any, what: str) -> Any:
    size = _json_size(value)
    if size > MAX_OUTPUT_BYTES:
        raise ValueError(
            f"{what} is {size:,} bytes of JSON; Step Functions takes at most {MAX_OUTPUT_BYTES:,} (256 KiB) as a "
            "step's output: store the data elsewhere (e.g. S3) and pass a reference"
        )
    return value


class _Request(BaseModel):
    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True, extra="forbid", populate_by_name=True)


class _TaskTarget(_Request):
    """Which waiting task: its raw ``taskToken``, or ``executionId`` + ``stepId``."""

    taskToken: str | None = Field(None, min_length=1, max_length=MAX_TOKEN_CHARS)
    executionId: str | None = Field(None, min_length=1)
    stepId: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_target(self) -> _TaskTarget:
        by_step = self.executionId is not None or self.stepId is not None
        if self.taskToken is not None and by_step:
            raise ValueError("give either taskToken, or executionId and stepId, not both")
        if self.taskToken is None and (self.executionId is None or self.stepId is None):
            missing = ("stepId" if self.executionId else "executionId" if self.stepId
                       else "taskToken, or executionId and stepId")
            raise ValueError(f"which task? {missing} is missing")
        return self


class CompleteTaskRequest(_TaskTarget):
    """completeTask: the step succeeds with ``result`` as its output."""

    result: Any = None

    @field_validator("result")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _check_size(value, "result")


class FailTaskRequest(_TaskTarget):
    """failTask: the step fails with ``error`` (the name Retry/Catch match) and ``cause``."""

    error: str = Field("TaskFailed", min_length=1, max_length=MAX_ERROR_CHARS)
    cause: str = Field("", max_length=MAX_CAUSE_CHARS)


class SignalRequest(_Request):
    """signalWorkflow: deliver ``payload`` to the execution's step waiting for signal ``name`` (or buffer it)."""

    executionId: str = Field(min_length=1)
    name: str
    payload: Any = None
    signalId: str | None = Field(
        None, description="Idempotency key: a signal with an id this execution already received (for this name) "
        "is accepted once and reported as DUPLICATE.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(SIGNAL_NAME_PATTERN, value):
            raise ValueError(f"signal name {value!r} is not valid: a letter or digit, then letters, digits, '_', "
                             "'.', ':' or '-' (at most 128 characters)")
        return value

    @field_validator("signalId")
    @classmethod
    def _signal_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(SIGNAL_ID_PATTERN, value):
            raise ValueError(f"signalId {value!r} is not valid: 1 to 200 letters, digits or _ . : @ / + = -")
        return value

    @field_validator("payload")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _check_size(value, "payload")


class HeartbeatRequest(_TaskTarget):
    """A heartbeat for a callback step with ``heartbeatSeconds``: the work is still going on."""


class TaskOutcome(BaseModel):
    model_config = ConfigDict(defer_build=True)

    status: Literal["COMPLETED", "FAILED", "WAITING"]
    via: Literal["token", "step"]
    executionId: str | None = None
    stepId: str | None = None


class SignalOutcome(BaseModel):
    model_config = ConfigDict(defer_build=True)

    executionId: str
    name: str
    seq: int | None = Field(description="the signal's number in this execution's channel for the name")
    status: Literal["DELIVERED", "BUFFERED", "DUPLICATE"]
    deliveredTo: str | None = Field(None, description="the step that received it, when delivered by this call")


class WaitStart(BaseModel):
    """What the state function's ``wait`` op passes: a callback or signal step starting to wait."""

    model_config = ConfigDict(defer_build=True)

    executionId: str
    workflowId: str
    workflowVersion: str = ""
    stepId: str
    stepName: str = ""
    stepType: Literal["callback", "signal"]
    taskToken: str = Field(min_length=1)
    attempt: int = 0
    signal: str | None = None
    notify: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    timeoutSeconds: int | None = None


# == Step Functions and EventBridge (one small layer each) ==================================================
class TaskTokens:
    """SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat. A token Step Functions no longer accepts raises
    ``TaskTokenNotActive``."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from coafi import aws

            self._client = aws.client("stepfunctions")
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _DEAD_TOKEN_CODES:
                raise TaskTokenNotActive(
                    f"Step Functions refused the task token ({code}): the task was already completed or failed, "
                    "timed out, or its execution ended"
                ) from None
            raise

    def succeed(self, token: str, output: Any) -> None:
        self._call("send_task_success", taskToken=token, output=dumps(output))

    def fail(self, token: str, error: str, cause: str) -> None:
        self._call("send_task_failure", taskToken=token, error=error, cause=cause)

    def heartbeat(self, token: str) -> None:
        self._call("send_task_heartbeat", taskToken=token)


class WaitEvents:
    """``TaskTokenIssued`` on the app's bus."""

    def __init__(self, bus: str | None, client: Any | None = None) -> None:
        self.bus = bus
        self._client = client

    def task_token_issued(self, start: WaitStart) -> None:
        if not self.bus:
            raise WaitError(
                f"step '{start.stepId}' should announce its task token (notify: true) but no event bus is configured "
                "(COAFI_EVENT_BUS_NAME); set notify: false on the step or deploy with the CDK app"
            )
        if self._client is None:
            from coafi import aws

            self._client = aws.client("events")
        detail = {
            "executionId": start.executionId, "workflowId": start.workflowId,
            "workflowVersion": start.workflowVersion, "stepId": start.stepId, "stepName": start.stepName,
            "taskToken": start.taskToken, "attempt": start.attempt, "details": start.details,
            "timeoutSeconds": start.timeoutSeconds, "issuedAt": now_iso(),
        }
        response = self._client.put_events(Entries=[{
            "Source": EVENT_SOURCE, "DetailType": TASK_TOKEN_ISSUED, "Detail": dumps(detail),
            "EventBusName": self.bus, "Resources": [start.executionId],
        }])
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise WaitError(f"{TASK_TOKEN_ISSUED} of step '{start.stepId}' was not published to {self.bus}: "
                            f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")


# == the API ================================================================================================
class Waits:
    """The waiting steps of the executions recorded in ``store``'s table."""

    def __init__(self, store: StateStore, *, tokens: TaskTokens | None = None,
                 events: WaitEvents | None = None) -> None:
        self.state = store
        self.store = WaitStore(store)
        self.tokens = tokens or TaskTokens()
        self.events = events or WaitEvents(os.environ.get("COAFI_EVENT_BUS_NAME"))

    @classmethod
    def from_env(cls) -> Waits:
        """Inside a COAFI function (or with ``COAFI_TABLE_NAME`` set)."""
        from coafi.config import function_settings

        settings = function_settings()
        store = StateStore(settings.table_name, retention_days=settings.retention_days,
                           payload_bucket=settings.payload_bucket)
        return cls(store, events=WaitEvents(settings.event_bus_name))

    # -- completeTask / failTask -------------------------------------------------------------------
    def complete_task(self, request: CompleteTaskRequest) -> TaskOutcome:
        return self._settle(request, "COMPLETED", lambda token: self.tokens.succeed(token, request.result))

    def fail_task(self, request: FailTaskRequest) -> TaskOutcome:
        return self._settle(request, "FAILED", lambda token: self.tokens.fail(token, request.error, request.cause))

    def _settle(self, request: _TaskTarget, status: Literal["COMPLETED", "FAILED"],
                send: Callable[[str], None]) -> TaskOutcome:
        """``send(token)`` the step's outcome to Step Functions. By raw token it is sent as is; by execution and
        step the wait record is claimed first (``_claim``), and released again if the outcome was not sent."""
        if request.taskToken is not None:
            send(request.taskToken)
            return TaskOutcome(status=status, via="token")
        record = self._claim(request, status)
        try:
            send(record.taskToken)
        except TaskTokenNotActive:
            raise self._gone(record, status) from None
        except BaseException:  # not sent (throttled, network): the step still waits, a retry may complete it
            self.store.end_wait(record, "WAITING", expected=status)
            raise
        return TaskOutcome(status=status, via="step", executionId=record.executionId, stepId=record.stepId)

    def heartbeat_task(self, request: HeartbeatRequest) -> TaskOutcome:
        """SendTaskHeartbeat: the step keeps waiting (its heartbeatSeconds start again)."""
        if request.taskToken is not None:
            self.tokens.heartbeat(request.taskToken)
            return TaskOutcome(status="WAITING", via="token")
        assert request.executionId is not None and request.stepId is not None
        self._running(request.executionId, f"step '{request.stepId}' is not waiting any more")
        record = self.store.get_wait(request.executionId, request.stepId)
        if record is None or record.status != "WAITING":
            state = "has not started waiting" if record is None else f"is not waiting ({record.status.lower()})"
            raise NotWaiting(f"step '{request.stepId}' of execution '{request.executionId}' {state}")
        try:
            self.tokens.heartbeat(record.taskToken)
        except TaskTokenNotActive:
            raise self._gone(record, "WAITING") from None
        return TaskOutcome(status="WAITING", via="step", executionId=record.executionId, stepId=record.stepId)

    def _claim(self, request: _TaskTarget, status: Literal["COMPLETED", "FAILED"]) -> WaitRecord:
        """The step's wait record, marked ``status`` by one conditional write (so two callers completing the same
        step cannot both succeed)."""
        assert request.executionId is not None and request.stepId is not None
        execution = self._running(request.executionId, f"step '{request.stepId}' is not waiting any more")
        record = self.store.get_wait(request.executionId, request.stepId)
        if record is None:
            raise NotWaiting(
                f"step '{request.stepId}' of execution '{request.executionId}' has not started waiting (is it a "
                f"callback step of workflow '{execution.workflowId}', and has the execution reached it?)"
            )
        if record.stepType == "signal":
            raise NotWaiting(
                f"step '{record.stepId}' waits for signal '{record.signal}', not for completeTask: send it with "
                f"`coafi signal {record.executionId} {record.signal} --payload JSON`"
            )
        if record.status != "WAITING" or not self.store.end_wait(record, status):
            latest = self.store.get_wait(record.executionId, record.stepId) or record
            raise NotWaiting(
                f"step '{record.stepId}' of execution '{record.executionId}' is not waiting: it was already "
                f"{latest.status.lower()}" + (f" at {latest.endedAt}" if latest.endedAt else "")
            )
        return record

    def _gone(self, record: WaitRecord, claimed: Literal["COMPLETED", "FAILED", "WAITING"]) -> NotWaiting:
        self.store.end_wait(record, "ENDED", expected=claimed)  # unless the step waits again with a new token
        return NotWaiting(
            f"step '{record.stepId}' of execution '{record.executionId}' stopped waiting before it was completed "
            "(it timed out, or the execution was stopped); nothing was changed"
        )

    def _running(self, execution_id: str, what: str) -> WorkflowState:
        state = self.state.get_execution(execution_id)
        if state is None:
            raise UnknownExecution(execution_id)
        if state.finished:
            raise ExecutionFinished(state, what)
        return state

    # -- signalWorkflow ----------------------------------------------------------------------------
    def signal_workflow(self, request: SignalRequest) -> SignalOutcome:
        """Buffer the signal, then deliver buffered signals to waiting steps (this one, if a step waits)."""
        self._running(request.executionId, f"signal '{request.name}' was not delivered")
        try:
            seq = self.store.enqueue(request.executionId, request.name, request.payload,
                                     signal_id=request.signalId)
        except DuplicateSignal as duplicate:
            return SignalOutcome(executionId=request.executionId, name=request.name, seq=duplicate.seq,
                                 status="DUPLICATE")
        delivered = self.deliver(request.executionId, request.name)
        to = next((d.waiter.stepId for d in delivered if d.seq == seq), None)
        return SignalOutcome(executionId=request.executionId, name=request.name, seq=seq,
                             status="DELIVERED" if to else "BUFFERED", deliveredTo=to)

    def deliver(self, execution_id: str, name: str) -> list[Delivery]:
        """Hand buffered signals to waiting steps, oldest to longest-waiting, until one side is empty. A step
        that stopped waiting (timed out, execution stopped) loses its place; its signal goes back in the queue."""
        delivered: list[Delivery] = []
        while (delivery := self.store.take(execution_id, name)) is not None:
            try:
                self.tokens.succeed(delivery.waiter.taskToken, delivery.payload)
            except TaskTokenNotActive:
                self.store.put_back(execution_id, name, delivery.seq)
                continue
            except BaseException:  # not sent (throttled, network): both stay queued for the next delivery
                self.store.put_back(execution_id, name, delivery.seq, delivery.waiter)
                raise
            self.store.mark_delivered(delivery)
            delivered.append(delivery)
        return delivered

    # -- the state function's side: a step starts waiting ------------------------------------------
    def begin_wait(self, start: WaitStart) -> list[Delivery]:
        """Record the step RUNNING, store its token against (execution, step), then announce it (callback with
        notify) or register it for its signal and deliver a buffered one at once."""
        self.state.step_started(start.executionId, start.stepId, step_name=start.stepName or start.stepId,
                                step_type=start.stepType)
        self.store.put_wait(WaitRecord(
            executionId=start.executionId, workflowId=start.workflowId, stepId=start.stepId,
            stepName=start.stepName, stepType=start.stepType, signal=start.signal, taskToken=start.taskToken,
            attempt=start.attempt, issuedAt=now_iso(), timeoutSeconds=start.timeoutSeconds,
        ))
        if start.stepType == "callback":
            if start.notify:
                self.events.task_token_issued(start)
            return []
        if not start.signal:
            raise WaitError(f"signal step '{start.stepId}' was compiled without a signal name; recompile it")
        self.store.add_waiter(start.executionId, start.signal, Waiter(stepId=start.stepId, taskToken=start.taskToken))
        return self.deliver(start.executionId, start.signal)

    def list_waits(self, execution_id: str) -> list[WaitRecord]:
        return self.store.list_waits(execution_id)

    # the design's names
    completeTask = complete_task
    failTask = fail_task
    signalWorkflow = signal_workflow
    heartbeatTask = heartbeat_task


# == module-level API =======================================================================================
def complete_task(token: str | None = None, *, execution_id: str | None = None, step_id: str | None = None,
                  result: Any = None, waits: Waits | None = None) -> TaskOutcome:
    """Complete a callback step: by its raw task ``token``, or by ``execution_id`` and ``step_id``."""
    request = CompleteTaskRequest(taskToken=token, executionId=execution_id, stepId=step_id, result=result)
    return (waits or Waits.from_env()).complete_task(request)


def fail_task(token: str | None = None, *, execution_id: str | None = None, step_id: str | None = None,
              error: str = "TaskFailed", cause: str = "", waits: Waits | None = None) -> TaskOutcome:
    """Fail a callback step with ``error`` / ``cause``: by its raw task ``token``, or by execution and step id."""
    request = FailTaskRequest(taskToken=token, executionId=execution_id, stepId=step_id, error=error, cause=cause)
    return (waits or Waits.from_env()).fail_task(request)


def heartbeat_task(token: str | None = None, *, execution_id: str | None = None, step_id: str | None = None,
                   waits: Waits | None = None) -> TaskOutcome:
    """Tell a callback step with ``heartbeatSeconds`` that the work goes on (by token, or execution and step)."""
    request = HeartbeatRequest(taskToken=token, executionId=execution_id, stepId=step_id)
    return (waits or Waits.from_env()).heartbeat_task(request)


def signal_workflow(execution_id: str, name: str, payload: Any = None, *, signal_id: str | None = None,
                    waits: Waits | None = None) -> SignalOutcome:
    """Send signal ``name`` with ``payload`` to an execution (delivered to its waiting step, or buffered)."""
    request = SignalRequest(executionId=execution_id, name=name, payload=payload, signalId=signal_id)
    return (waits or Waits.from_env()).signal_workflow(request)


completeTask = complete_task
failTask = fail_task
signalWorkflow = signal_workflow
heartbeatTask = heartbeat_task
