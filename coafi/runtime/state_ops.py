"""What the core "state" Lambda does: record workflow start and finish, decisions, and the steps that run
no COAFI code (waits, sub-workflows, external Lambdas)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from coafi.errors import InvalidStateOperation, validation_problems
from coafi.state.store import StateStore, now_iso

_STARTED_BY = "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"
#: A callback or signal step starts waiting: handled by ``coafi.runtime.wait_ops``, which the state function
#: imports on the first such op (it loads the waits' store and models: ~30 ms of cold start otherwise).
WAIT_OP = "wait"


def is_wait_operation(event: Any) -> bool:
    return isinstance(event, dict) and event.get("op") == WAIT_OP


class _Op(BaseModel):
    # defer_build: operations are validated through _ADAPTER, never by the models' own validators, so those are
    # built on first use if ever, not at import (a few ms of the state function's cold start: BENCHMARKS.md).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    executionId: str = Field(min_length=1)
    workflowId: str = Field(min_length=1)


class StartOp(_Op):
    op: Literal["start"]
    workflowVersion: str = ""
    startTime: str = ""
    input: Any = None


class FinishOp(_Op):
    op: Literal["finish"]
    status: Literal["SUCCEEDED", "FAILED"]
    input: Any = None
    result: dict[str, Any] | None = Field(None, description="the body's final state: {input, steps}")
    error: dict[str, Any] | None = None


class SkippedStep(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    stepId: str
    stepName: str = ""
    stepType: str = "task"


class DecideOp(_Op):
    op: Literal["decide"]
    stepId: str
    stepName: str = ""
    branch: str
    next: list[str] = Field(default_factory=list)
    skipped: list[SkippedStep] = Field(default_factory=list)
    rules: dict[str, Any] | None = Field(None, description="the rules function's result (decisions with rules)")


class StepOp(_Op):
    op: Literal["step"]
    stepId: str
    stepName: str = ""
    stepType: str
    action: str = ""
    status: Literal["RUNNING", "SUCCEEDED", "FAILED"]
    output: Any = None
    error: dict[str, Any] | None = None


StateOperation = Annotated[StartOp | FinishOp | DecideOp | StepOp, Field(discriminator="op")]
_ADAPTER: TypeAdapter[StartOp | FinishOp | DecideOp | StepOp] = TypeAdapter(StateOperation)


def parse_operation(event: Any) -> StartOp | FinishOp | DecideOp | StepOp:
    try:
        return _ADAPTER.validate_python(event)
    except ValidationError as exc:  # a precise, permanent error (Step Functions does not retry it)
        raise InvalidStateOperation(f"not a COAFI state operation: {validation_problems(exc)}") from None


def normalise_input(raw: Any) -> tuple[Any, dict[str, Any]]:
    """The workflow input and how the workflow was started, from a raw execution input."""
    if isinstance(raw, dict) and {"detail-type", "source", "detail"} <= raw.keys():
        return raw["detail"], {
            "type": "event", "source": raw["source"], "detailType": raw["detail-type"],
            "eventId": raw.get("id"), "time": raw.get("time"),
        }
    if isinstance(raw, dict) and _STARTED_BY in raw and "parent" in raw:
        child_input = raw.get("input")
        parameters = raw.get("parameters") or {}
        if isinstance(child_input, dict) and isinstance(parameters, dict):
            child_input = {**child_input, **parameters}
        return child_input, {"type": "subworkflow", "parent": raw["parent"]}
    return raw, {"type": "direct"}


def error_info(error: dict[str, Any] | None) -> dict[str, str]:
    """Step Functions' ``{"Error", "Cause"}`` as ``{"type", "message"}``; a Lambda's JSON cause unwrapped."""
    if not error:
        return {"type": "Unknown", "message": ""}
    kind = str(error.get("Error") or error.get("type") or "Unknown")
    cause = error.get("Cause", error.get("message", ""))
    message = str(cause or "")
    try:
        parsed = json.loads(message)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        message = str(parsed["errorMessage"])
    return {"type": kind, "message": message}


def apply(operation: StartOp | FinishOp | DecideOp | StepOp, store: StateStore) -> dict[str, Any]:
    if isinstance(operation, StartOp):
        workflow_input, trigger = normalise_input(operation.input)
        store.start_execution(operation.executionId, operation.workflowId, operation.workflowVersion,
                              {"input": workflow_input, "trigger": trigger}, operation.startTime or now_iso())
        return {"input": workflow_input, "steps": {}}
    if isinstance(operation, FinishOp):
        final = operation.result or {}
        result = {"input": final.get("input", operation.input), "steps": final.get("steps") or {}}
        if operation.status == "SUCCEEDED":
            store.finish_execution(operation.executionId, operation.workflowId, "SUCCEEDED", output=result)
        else:
            store.finish_execution(operation.executionId, operation.workflowId, "FAILED",
                                   error=error_info(operation.error))
        return result
    if isinstance(operation, DecideOp):
        output: dict[str, Any] = {"branch": operation.branch, "next": operation.next}
        if operation.rules is not None:
            output["rules"] = operation.rules
        store.record_step(operation.executionId, operation.stepId,
                          step_name=operation.stepName or operation.stepId, step_type="decision",
                          status="SUCCEEDED", output=output)
        store.steps_skipped(operation.executionId, [s.model_dump() for s in operation.skipped])
        return output
    if operation.status == "RUNNING":
        store.step_started(operation.executionId, operation.stepId,
                           step_name=operation.stepName or operation.stepId, step_type=operation.stepType,
                           action=operation.action)
        return {}
    if operation.status == "SUCCEEDED":
        store.step_succeeded(operation.executionId, operation.stepId, operation.output)
    else:
        store.step_failed(operation.executionId, operation.stepId, error_info(operation.error))
    return {}
