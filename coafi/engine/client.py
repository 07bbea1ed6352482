"""The engine API (the design's WorkflowEngineInterface) on Step Functions and the state table.

``WorkflowClient`` is what the CLI, the API Lambda and Python callers use (``from coafi.client import
WorkflowClient``). Executions are named by their Step Functions execution ARN, which is also their id in the
state table. See docs/engine-api.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from coafi import aws, naming
from coafi.engine import query as queries
from coafi.engine.errors import (
    ExecutionNotRunning,
    IdempotencyConflict,
    InputTooLarge,
    UnknownExecution,
)
from coafi.engine.registry import RegisteredVersion, RegisteredWorkflow, WorkflowRegistry
from coafi.state import (
    ExecutionNotFound,
    ExecutionPage,
    HistoryEvent,
    InvalidStateUpdate,
    StateStore,
    StepRecord,
    WorkflowState,
)
from coafi.state.codec import epoch_seconds, now_iso, plain, s
from coafi.state.store import BACKSTOP_DAYS

if TYPE_CHECKING:
    from coafi.engine.waits import SignalOutcome, TaskOutcome, Waits

#: Step Functions' limit on an execution's input (UTF-8 bytes).
MAX_INPUT_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY = 256
MAX_REASON = 4096
STARTKEY_PREFIX = "STARTKEY#"
STARTKEY_SK = "STARTKEY"
TERMINATED_ERROR = "Terminated"
FINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class StartOptions(BaseModel):
    """Options of ``start_workflow``."""

    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True, extra="forbid", populate_by_name=True)

    idempotency_key: str | None = Field(None, alias="idempotencyKey", min_length=1, max_length=MAX_IDEMPOTENCY_KEY,
                                        description="same key (for this workflow) -> same execution, never a second")
    version: str | None = Field(None, min_length=1, description="a registered version; default: the live one")


class StartResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    executionId: str = Field(description="the execution ARN")
    workflowId: str
    workflowVersion: str = ""
    stateMachineArn: str
    started: bool = Field(description="False when the idempotency key returned an execution started earlier")
    idempotencyKey: str | None = None


class WatchUpdate(BaseModel):
    """One change ``watch`` reports: a step's status, then the execution's end."""

    model_config = ConfigDict(defer_build=True)

    kind: str = Field(description="'step' or 'execution'")
    status: str
    step: StepRecord | None = None
    state: WorkflowState | None = None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def execution_name(workflow_id: str, key: str) -> str:
    """Deterministic execution name for an idempotency key: Step Functions refuses a second execution of that
    name on the state machine, so even a caller that crashed between our record and the start cannot get two."""
    return "idem-" + hashlib.sha256(f"{workflow_id}\0{key}".encode()).hexdigest()[:48]


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives an execution ``name`` of a state machine (or of one of its versions)."""
    parts = state_machine_arn.split(":")
    if len(parts) < 7 or parts[5] != "stateMachine":
        raise ValueError(f"not a state machine ARN: {state_machine_arn}")
    return ":".join([*parts[:5], "execution", parts[6], name])


def base_state_machine_arn(arn: str) -> str:
    """A published version's (or alias's) ARN without its qualifier."""
    return ":".join(arn.split(":")[:7])


class WorkflowClient:
    """startWorkflow, getWorkflowStatus, terminateWorkflow, getExecutionHistory, findExecutions, queryWorkflow,
    and the registry (registerWorkflow, unregisterWorkflow)."""

    def __init__(self, table_name: str, *, retention_days: int = 30, payload_bucket: str | None = None,
                 event_bus_name: str | None = None, stack_name: str | None = None) -> None:
        self.table_name = table_name
        self.event_bus_name = event_bus_name
        self.stack_name = stack_name
        self.retention_days = retention_days
        self.store = StateStore(table_name, retention_days=retention_days, payload_bucket=payload_bucket)
        self.registry = WorkflowRegistry(table_name)

    @classmethod
    def from_stack(cls, stack_name: str | None = None) -> WorkflowClient:
        """The client of a deployed stack (its outputs on the current endpoint; default stack
        ``$COAFI_STACK_NAME`` or ``Coafi``)."""
        import os

        from coafi.deploy import DEFAULT_STACK, read_outputs

        name = stack_name or os.environ.get("COAFI_STACK_NAME") or DEFAULT_STACK
        outputs = read_outputs(name)
        return cls(outputs.state_table_name, event_bus_name=outputs.event_bus_name, stack_name=name)

    @classmethod
    def from_env(cls) -> WorkflowClient:
        """Inside a COAFI function (``coafi.config.FunctionSettings``)."""
        from coafi.config import function_settings

        settings = function_settings()
        return cls(settings.table_name, retention_days=settings.retention_days,
                   payload_bucket=settings.payload_bucket, event_bus_name=settings.event_bus_name)

    @property
    def sfn(self) -> Any:
        return aws.client("stepfunctions")

    @property
    def dynamodb(self) -> Any:
        return self.store.client

    # == registry ======================================================================================
    def register_workflow(self, workflow_id: str, version: str, state_machine_arn: str, *,
                          make_live: bool = True, source: str = "api") -> RegisteredVersion:
        return self.registry.register_workflow(workflow_id, version, state_machine_arn, make_live=make_live,
                                               source=source)

    def unregister_workflow(self, workflow_id: str, version: str | None = None) -> list[str]:
        return self.registry.unregister_workflow(workflow_id, version)

    def list_workflows(self) -> list[RegisteredWorkflow]:
        return self.registry.list_workflows()

    # == start =========================================================================================
    def start_workflow(
        self, workflow_id: str, workflow_input: Any = None, options: StartOptions | None = None, *,
        idempotency_key: str | None = None, version: str | None = None, state_machine_arn: str | None = None,
    ) -> StartResult:
        """Start the live version of ``workflow_id`` (or ``version``) with ``workflow_input``.

        With an idempotency key the same key returns the same execution, never a second one (for the
        retention period of the key's record); the same key with a different input or version is
        ``IdempotencyConflict``. ``state_machine_arn`` bypasses the registry (event triggers start the state
        machine their rule belongs to).
        """
        options = options or StartOptions(idempotency_key=idempotency_key, version=version)
        body = json.dumps(workflow_input if workflow_input is not None else {})
        size = len(body.encode())
        if size > MAX_INPUT_BYTES:
            raise InputTooLarge(f"the input of workflow '{workflow_id}' is {size} bytes; Step Functions accepts "
                                f"at most {MAX_INPUT_BYTES}: pass a reference (e.g. an S3 key) instead")
        if state_machine_arn is not None:
            target = RegisteredVersion(workflowId=workflow_id, version=options.version or "-",
                                       stateMachineArn=state_machine_arn)
        else:
            target = self.registry.resolve(workflow_id, options.version)
        if options.idempotency_key is None:
            arn = self.sfn.start_execution(stateMachineArn=target.stateMachineArn, name=str(uuid.uuid4()),
                                           input=body)["executionArn"]
            return self._result(target, str(arn), True, None)
        return self._start_once(target, workflow_input, body, options.idempotency_key, options.version)

    def _start_once(self, target: RegisteredVersion, workflow_input: Any, body: str, key: str,
                    pinned_version: str | None) -> StartResult:
        workflow_id = target.workflowId
        name = execution_name(workflow_id, key)
        input_sha = hashlib.sha256(canonical(workflow_input if workflow_input is not None else {}).encode()
                                   ).hexdigest()
        pk = f"{STARTKEY_PREFIX}{workflow_id}#{hashlib.sha256(key.encode()).hexdigest()}"
        expires = datetime.now(UTC) + timedelta(days=BACKSTOP_DAYS + self.retention_days)
        item = {
            "PK": s(pk), "SK": s(STARTKEY_SK), "workflowId": s(workflow_id), "idempotencyKey": s(key),
            "inputSha256": s(input_sha), "executionName": s(name), "stateMachineArn": s(target.stateMachineArn),
            "workflowVersion": s(target.version), "createdAt": s(now_iso()),
            "expiresAt": {"N": str(epoch_seconds(expires))},
        }
        first = True
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(PK)")
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            first = False
            stored = self.dynamodb.get_item(TableName=self.table_name, ConsistentRead=True,
                                            Key={"PK": s(pk), "SK": s(STARTKEY_SK)}).get("Item")
            if stored is None:  # expired between the two calls: start afresh
                return self._start_once(target, workflow_input, body, key, pinned_version)
            record = plain(stored)
            earlier = record.get("executionArn") or execution_arn(record["stateMachineArn"], record["executionName"])
            if record["inputSha256"] != input_sha:
                raise IdempotencyConflict(workflow_id, key, earlier, "input") from None
            if pinned_version is not None and record.get("workflowVersion") != pinned_version:
                raise IdempotencyConflict(workflow_id, key, earlier,
                                          f"version ({record.get('workflowVersion')})") from None
            target = target.model_copy(update={"stateMachineArn": record["stateMachineArn"],
                                               "version": record.get("workflowVersion", target.version)})
            if record.get("executionArn"):
                return self._result(target, str(record["executionArn"]), False, key)
        arn, created = self._start_named(target.stateMachineArn, name, body, workflow_id, key)
        self.dynamodb.update_item(TableName=self.table_name, Key={"PK": s(pk), "SK": s(STARTKEY_SK)},
                                  UpdateExpression="SET executionArn = :arn",
                                  ExpressionAttributeValues={":arn": s(arn)})
        return self._result(target, arn, first or created, key)

    def _start_named(self, state_machine_arn: str, name: str, body: str, workflow_id: str, key: str
                     ) -> tuple[str, bool]:
        """Start execution ``name``; if it exists already (an earlier attempt of this key), that one, provided
        its input is ours. Returns the ARN and whether this call started it."""
        try:
            response = self.sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)
            return str(response["executionArn"]), True
        except self.sfn.exceptions.ExecutionAlreadyExists:
            arn = execution_arn(state_machine_arn, name)
            existing = self.sfn.describe_execution(executionArn=arn)
            if canonical(json.loads(existing.get("input") or "{}")) != canonical(json.loads(body)):
                raise IdempotencyConflict(workflow_id, key, arn, "input") from None
            return arn, False

    @staticmethod
    def _result(target: RegisteredVersion, arn: str, started: bool, key: str | None) -> StartResult:
        return StartResult(executionId=arn, workflowId=target.workflowId,
                           workflowVersion="" if target.version == "-" else target.version,
                           stateMachineArn=target.stateMachineArn, started=started, idempotencyKey=key)

    # == status ========================================================================================
    # -- completeTask / failTask / signalWorkflow (callback and signal steps, docs/waits.md) --------------
    @functools.cached_property
    def waits(self) -> Waits:
        """The waiting steps of this client's executions (same table, same bus)."""
        from coafi.engine.waits import WaitEvents, Waits

        return Waits(self.store, events=WaitEvents(self.event_bus_name))

    def complete_task(self, token: str | None = None, *, execution_id: str | None = None,
                      step_id: str | None = None, result: Any = None) -> TaskOutcome:
        """Complete a callback step: by its raw task ``token``, or by ``execution_id`` and ``step_id``."""
        from coafi.engine.waits import complete_task

        return complete_task(token, execution_id=execution_id, step_id=step_id, result=result, waits=self.waits)

    def fail_task(self, token: str | None = None, *, execution_id: str | None = None, step_id: str | None = None,
                  error: str = "TaskFailed", cause: str = "") -> TaskOutcome:
        """Fail a callback step with ``error`` (what Retry/Catch match) and ``cause``."""
        from coafi.engine.waits import fail_task

        return fail_task(token, execution_id=execution_id, step_id=step_id, error=error, cause=cause,
                         waits=self.waits)

    def signal_workflow(self, execution_id: str, name: str, payload: Any = None, *,
                        signal_id: str | None = None) -> SignalOutcome:
        """Send signal ``name``: delivered to the step waiting for it, or buffered until one does."""
        from coafi.engine.waits import signal_workflow

        return signal_workflow(execution_id, name, payload, signal_id=signal_id, waits=self.waits)

    def get_workflow_status(self, execution_id: str) -> WorkflowState:
        """The recorded state (steps, current steps, variables, output, error). While the record says RUNNING
        Step Functions is asked too: an execution stopped or timed out outside COAFI is recorded as such."""
        try:
            state: WorkflowState | None = self.store.get_state(execution_id)
        except ExecutionNotFound:
            state = None
        if state is not None and state.finished:
            return state
        description = self._describe(execution_id)
        if description is None:
            if state is None:
                raise UnknownExecution(execution_id)
            return state
        status = str(description["status"])
        if state is None:
            return WorkflowState(
                executionId=execution_id, workflowId=self._workflow_of(description["stateMachineArn"]),
                status=status if status in FINAL or status == "RUNNING" else "RUNNING",
                input=_json(description.get("input")), startTime=description.get("startDate"),
                endTime=description.get("stopDate"), metadata={"recorded": False},
            )
        if status in ("ABORTED", "TIMED_OUT"):
            error = {"type": str(description.get("error") or status), "message": str(description.get("cause") or "")}
            return self._record_end(state.workflowId, execution_id, status, error, {})
        return state

    def _describe(self, execution_id: str) -> dict[str, Any] | None:
        if ":execution:" not in execution_id:
            return None
        try:
            description: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_id)
        except (self.sfn.exceptions.ExecutionDoesNotExist, self.sfn.exceptions.InvalidArn):
            return None
        return description

    def _workflow_of(self, state_machine_arn: str) -> str:
        base = base_state_machine_arn(state_machine_arn)
        for workflow in self.list_workflows():
            if any(base_state_machine_arn(v.stateMachineArn) == base for v in workflow.versions):
                return workflow.workflowId
        name = base.split(":")[-1]
        prefix = f"{self.stack_name}{naming.STACK_SEPARATOR}" if self.stack_name else ""  # coafi.naming
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    # == terminate =====================================================================================
    def terminate_workflow(self, execution_id: str, reason: str) -> WorkflowState:
        """Stop a running execution and record why (status ABORTED, error ``Terminated: <reason>``, a
        WORKFLOW_ABORTED event with the reason, running steps ended as FAILED)."""
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("terminate needs a reason (it is recorded in the execution's history)")
        reason = reason[:MAX_REASON]
        description = self._describe(execution_id)
        if description is None:
            raise UnknownExecution(execution_id)
        if description["status"] != "RUNNING":
            raise ExecutionNotRunning(execution_id, str(description["status"]))
        self.sfn.stop_execution(executionArn=execution_id, error=TERMINATED_ERROR, cause=reason)
        workflow_id = self._workflow_of(description["stateMachineArn"])
        return self._record_end(workflow_id, execution_id, "ABORTED",
                                {"type": TERMINATED_ERROR, "message": reason},
                                {"reason": reason, "terminatedAt": now_iso()})

    def _record_end(self, workflow_id: str, execution_id: str, status: str, error: dict[str, str],
                    details: dict[str, Any]) -> WorkflowState:
        updates: dict[str, Any] = {"status": status, "error": error}
        if details:
            updates["metadata"] = {"termination": details}
        try:
            self.store.update_state(execution_id, updates, event=f"WORKFLOW_{status}",  # type: ignore[arg-type]
                                    event_details={"status": status, **details})
        except ExecutionNotFound:
            self.store.finish_execution(execution_id, workflow_id, status, error=error)
        except InvalidStateUpdate:
            pass  # it ended on its own in the meantime: that status stands
        state = self.store.get_state(execution_id)
        if state.status == status:
            for step in state.steps:
                if step.status == "RUNNING":
                    self.store.step_failed(execution_id, step.stepId, error)
            state = self.store.get_state(execution_id)
        return state

    # == history, listing, queries =====================================================================
    def get_execution_history(self, execution_id: str) -> list[HistoryEvent]:
        events = self.store.get_execution_history(execution_id)
        if not events and self._describe(execution_id) is None:
            raise UnknownExecution(execution_id)
        return events

    def find_executions(self, *, workflow_id: str | None = None, status: str | list[str] | None = None,
                        start_after: datetime | str | None = None, start_before: datetime | str | None = None,
                        limit: int = 50, next_token: str | None = None) -> ExecutionPage:
        return self.store.find_executions(workflow_id=workflow_id, status=status, start_after=start_after,
                                          start_before=start_before, limit=limit, next_token=next_token)

    def query_workflow(self, execution_id: str, name: str) -> Any:
        """Answer ``name`` (see ``coafi.engine.query``) from the recorded state: reads only, never touches the
        execution."""
        try:
            state = self.store.get_state(execution_id)
        except ExecutionNotFound:
            raise UnknownExecution(execution_id) from None
        return queries.answer(state, name)

    # == following an execution ========================================================================
    def watch(self, execution_id: str, *, poll_seconds: float = 1.0, timeout: float | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[WatchUpdate]:
        """Each step's status changes as recorded, then the execution's end (the iterator ends with it)."""
        reported: dict[str, tuple[str, int]] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.get_workflow_status(execution_id)
            for step in state.steps:
                seen = (step.status, step.attempts)
                if reported.get(step.stepId) != seen:
                    reported[step.stepId] = seen
                    yield WatchUpdate(kind="step", status=step.status, step=step)
            if state.finished:
                yield WatchUpdate(kind="execution", status=state.status, state=state)
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_id} still {state.status} after {timeout:.0f}s")
            sleep(poll_seconds)

    def wait(self, execution_id: str, *, timeout: float | None = None, poll_seconds: float = 1.0) -> WorkflowState:
        for update in self.watch(execution_id, poll_seconds=poll_seconds, timeout=timeout):
            if update.kind == "execution" and update.state is not None:
                return update.state
        raise AssertionError("watch ended without the execution's end")  # pragma: no cover

    # the design's names
    registerWorkflow = register_workflow
    unregisterWorkflow = unregister_workflow
    startWorkflow = start_workflow
    getWorkflowStatus = get_workflow_status
    terminateWorkflow = terminate_workflow
    getExecutionHistory = get_execution_history
    findExecutions = find_executions
    queryWorkflow = query_workflow


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
