"""What the core state function does for compensation and schedule steps (ops ``compensations``,
``compensation-failed`` and ``schedule``; the states that call them: coafi.saga.compiler)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from coafi.saga import STATE_OPS
from coafi.state.store import StateStore, now_iso

OPS = STATE_OPS
COMPENSATION_SUFFIX = ".compensate"
COMPENSATION_STEP_TYPE = "compensation"


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executionId: str = Field(min_length=1)
    workflowId: str = Field(min_length=1)


class CompensationEntry(BaseModel):
    """What the compiler knows about one compensable step (``compensations`` of the plan op, as JSON text)."""

    model_config = ConfigDict(extra="ignore")

    action: str
    function: str
    stepName: str = ""
    stepAction: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)


class CompensationsOp(_Op):
    op: Literal["compensations"]
    workflowVersion: str = ""
    input: Any = None
    error: dict[str, Any] | None = None
    compensations: str = Field(description="JSON object: step id -> CompensationEntry")


class CompensationFailedOp(_Op):
    op: Literal["compensation-failed"]
    stepId: str = Field(min_length=1)
    error: dict[str, Any] | None = None


class ScheduleOp(_Op):
    op: Literal["schedule"]
    stepId: str = Field(min_length=1)
    stepName: str = ""
    task: str
    payload: Any = None
    priority: int = 0
    delaySeconds: int | None = None
    cron: str | None = None
    timezone: str = "UTC"
    windowMinutes: int = 5


SagaOperation = CompensationsOp | CompensationFailedOp | ScheduleOp
_ADAPTER: TypeAdapter[SagaOperation] = TypeAdapter(SagaOperation)


def parse(event: Any) -> SagaOperation:
    return _ADAPTER.validate_python(event)


def handle(event: dict[str, Any], store: StateStore) -> dict[str, Any]:
    """The state function's entry for these ops (``event["op"] in OPS``)."""
    operation = parse(event)
    if isinstance(operation, CompensationsOp):
        return {"plan": plan_compensations(operation, store)}
    if isinstance(operation, CompensationFailedOp):
        record_compensation_failure(operation, store)
        return {}
    return schedule_step(operation, store)


# -- compensation ------------------------------------------------------------------------------------------------
def completion_order(store: StateStore, execution_id: str) -> list[tuple[str, Any]]:
    """``(stepId, output)`` of the steps whose latest attempt SUCCEEDED, in the order their success was recorded
    (the history's order: the writers' clocks, so parallel branches are ordered by when they finished)."""
    completed: dict[str, tuple[int, Any]] = {}
    for index, event in enumerate(store.get_execution_history(execution_id)):
        if event.stepId is None or event.stepId.endswith(COMPENSATION_SUFFIX):
            continue
        if event.type == "STEP_SUCCEEDED":
            completed[event.stepId] = (index, event.output)
        elif event.type in ("STEP_STARTED", "STEP_FAILED"):
            completed.pop(event.stepId, None)
    return [(step_id, output) for step_id, (_, output) in sorted(completed.items(), key=lambda kv: kv[1][0])]


def plan_compensations(op: CompensationsOp, store: StateStore) -> list[dict[str, Any]]:
    """One ``{"function", "event"}`` per completed step that declares a compensation, latest completion first.
    ``event`` is a step event for the compensation action: the step's parameters, the workflow input, the outputs
    of the step and of the steps it depends on, and ``compensation`` = {stepId, stepName, action, output,
    error (the workflow's original error)}."""
    from coafi.runtime.state_ops import error_info

    table = {k: CompensationEntry.model_validate(v) for k, v in json.loads(op.compensations).items()}
    completed = completion_order(store, op.executionId)
    outputs = {step_id: {"output": output} for step_id, output in completed}
    error = error_info(op.error)
    entered = now_iso()
    plan: list[dict[str, Any]] = []
    for step_id, output in reversed(completed):
        entry = table.get(step_id)
        if entry is None:
            continue
        visible = {d: outputs[d] for d in [*entry.dependencies, step_id] if d in outputs}
        plan.append({"function": entry.function, "event": {
            "context": {
                "executionId": op.executionId, "workflowId": op.workflowId, "workflowVersion": op.workflowVersion,
                "stepId": step_id + COMPENSATION_SUFFIX, "stepName": f"compensate {entry.stepName or step_id}",
                "action": entry.action, "attempt": 0, "enteredAt": entered,
            },
            "parameters": entry.parameters,
            "input": op.input,
            "steps": visible,
            "compensation": {"stepId": step_id, "stepName": entry.stepName or step_id, "action": entry.stepAction,
                             "output": output, "error": error},
        }})
    return plan


def record_compensation_failure(op: CompensationFailedOp, store: StateStore) -> None:
    """A compensation that failed (its action's error, or a Lambda that never ran): recorded FAILED once."""
    from coafi.runtime.state_ops import error_info

    records = {s.stepId: s for s in store.list_steps(op.executionId)}
    record = records.get(op.stepId)
    if record is not None and record.status == "FAILED":
        return  # the action's @action wrapper recorded it already
    if record is None:
        step_name = f"compensate {op.stepId.removesuffix(COMPENSATION_SUFFIX)}"
        store.step_started(op.executionId, op.stepId, step_name=step_name, step_type=COMPENSATION_STEP_TYPE)
    store.step_failed(op.executionId, op.stepId, error_info(op.error))


# -- schedule steps ----------------------------------------------------------------------------------------------
def task_id_for(execution_id: str, step_id: str) -> str:
    """The same id every time the step runs in this execution (a retried op finds the task it created)."""
    return "step-" + hashlib.sha256(f"{execution_id}#{step_id}".encode()).hexdigest()[:40]


def schedule_step(op: ScheduleOp, store: StateStore, scheduler: Any = None) -> dict[str, Any]:
    """Schedule the step's task (``coafi.tasks.TaskScheduler``), record the step, return what was scheduled."""
    from coafi.tasks import Task, TaskAlreadyExists, TaskScheduler, TaskSettings

    store.step_started(op.executionId, op.stepId, step_name=op.stepName or op.stepId, step_type="schedule",
                       action=op.task)
    try:
        if scheduler is None:
            scheduler = TaskScheduler(TaskSettings.from_env())
        task = Task(id=task_id_for(op.executionId, op.stepId), type=op.task,
                    payload=op.payload if op.payload is not None else {}, priority=op.priority,
                    metadata={"workflowId": op.workflowId, "executionId": op.executionId, "stepId": op.stepId})
        try:
            if op.cron is not None:
                record = scheduler.schedule_cron_task(task, op.cron, timezone=op.timezone,
                                                      window_minutes=op.windowMinutes)
            else:
                record = scheduler.schedule_task_with_delay(task, op.delaySeconds or 0)
        except TaskAlreadyExists:  # this op ran before (a retried invocation): the same task
            record = scheduler.get_task_status(task.id, refresh=False)
    except Exception as exc:
        store.step_failed(op.executionId, op.stepId, {"type": type(exc).__name__, "message": str(exc)})
        raise
    output = {"taskId": record.id, "type": record.type, "status": record.status.value, "route": record.route.value,
              "runAt": record.runAt.isoformat() if record.runAt else None, "cron": record.cron,
              "scheduleName": record.scheduleName}
    store.step_succeeded(op.executionId, op.stepId, output)
    return output
