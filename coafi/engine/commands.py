"""EventBridge commands on the app's bus and event-triggered starts, as the API Lambda handles them.

Commands are events whose ``detail-type`` names one (``COMMANDS``: detail-type -> pydantic model of the
``detail`` + handler). A command that is malformed, too large or refused (unknown workflow, conflicting
idempotency key, execution not running, ...) is answered with a ``CommandFailed`` event (source
``coafi.engine``) naming the command, the error and the offending field, and is not retried; a command that
succeeds is answered with ``CommandSucceeded`` carrying its result. Unexpected errors (AWS throttling, ...) are
raised so Lambda retries the event (twice, then the dead-letter queue); every command is idempotent under
retry (a start without an idempotency key uses the event id as its key).

Event triggers of workflow definitions reach the same function as ``{"coafiTrigger": {"workflowId"},
"event": <the whole event>}`` (an input transformer of the trigger rule) and start that workflow's state machine
(``coafi.naming.workflow_arns``; the state machine, not a registered version, as before) with the event as input,
keyed by the event id: a second delivery of the same event starts nothing.

Adding a command is one entry in ``COMMANDS`` (its rule pattern follows from the keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coafi.engine import wait_commands as waits
from coafi.engine.client import MAX_IDEMPOTENCY_KEY, MAX_REASON, StartOptions, WorkflowClient
from coafi.engine.errors import EngineError
from coafi.engine.waits import WaitError
from coafi.state.errors import StateError

#: Source of the events the engine publishes (never a command: the command rule excludes it).
ENGINE_SOURCE = "coafi.engine"
COMMAND_FAILED = "CommandFailed"
COMMAND_SUCCEEDED = "CommandSucceeded"
#: Largest command ``detail`` accepted (UTF-8 bytes of its JSON); a start's input is further limited by Step
#: Functions (256 KiB), which EventBridge's own 256 KiB event limit already implies.
MAX_COMMAND_BYTES = 256 * 1024
_MAX_MESSAGE = 2000
WORKFLOW_ID = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class CommandModel(BaseModel):
    """Every command's detail may carry a ``correlationId`` that its answer event repeats."""

    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True, extra="forbid")

    correlationId: str | None = Field(None, min_length=1, max_length=256)


class StartWorkflowCommand(CommandModel):
    workflowId: str = Field(pattern=WORKFLOW_ID)
    input: Any = None
    idempotencyKey: str | None = Field(None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY)
    version: str | None = Field(None, min_length=1, max_length=128)


class TerminateWorkflowCommand(CommandModel):
    executionId: str = Field(min_length=1, max_length=2048)
    reason: str = Field(min_length=1, max_length=MAX_REASON)


@dataclass(frozen=True)
class CommandContext:
    """The command event around the detail."""

    event_id: str
    detail_type: str
    source: str


Handler = Callable[[WorkflowClient, Any, CommandContext], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    model: type[CommandModel]
    run: Handler


def run_start(client: WorkflowClient, command: StartWorkflowCommand, context: CommandContext) -> dict[str, Any]:
    key = command.idempotencyKey or f"event:{context.event_id}"
    result = client.start_workflow(command.workflowId, command.input,
                                   StartOptions(idempotency_key=key, version=command.version))
    return result.model_dump(mode="json")


def run_terminate(client: WorkflowClient, command: TerminateWorkflowCommand, context: CommandContext
                  ) -> dict[str, Any]:
    state = client.terminate_workflow(command.executionId, command.reason)
    return {"executionId": state.executionId, "status": state.status}


class SignalWorkflowDetail(waits.SignalWorkflowCommand, CommandModel):
    """SignalWorkflow: ``{"executionId", "name", "payload"?, "signalId"?, "correlationId"?}``."""


class CompleteTaskDetail(waits.CompleteTaskCommand, CommandModel):
    """CompleteTask: ``{"taskToken"}`` or ``{"executionId", "stepId"}``, ``"result"``, ``"correlationId"?``."""


class FailTaskDetail(waits.FailTaskCommand, CommandModel):
    """FailTask: the task (as CompleteTask), ``"error"``, ``"cause"``, ``"correlationId"?``."""


def run_signal(client: WorkflowClient, command: SignalWorkflowDetail, context: CommandContext) -> dict[str, Any]:
    if command.signalId is None:  # EventBridge delivers at least once: a redelivered event is one signal
        command = command.model_copy(update={"signalId": f"event:{context.event_id}"})
    return waits.signal_workflow_command(command, client.waits).model_dump(mode="json")


def run_complete(client: WorkflowClient, command: CompleteTaskDetail, context: CommandContext) -> dict[str, Any]:
    return waits.complete_task_command(command, client.waits).model_dump(mode="json")


def run_fail(client: WorkflowClient, command: FailTaskDetail, context: CommandContext) -> dict[str, Any]:
    return waits.fail_task_command(command, client.waits).model_dump(mode="json")


#: detail-type -> (model of the detail, handler). The command rule on the bus matches exactly these keys.
COMMANDS: dict[str, Command] = {
    "StartWorkflow": Command(StartWorkflowCommand, run_start),
    "TerminateWorkflow": Command(TerminateWorkflowCommand, run_terminate),
    waits.SIGNAL_WORKFLOW: Command(SignalWorkflowDetail, run_signal),
    waits.COMPLETE_TASK: Command(CompleteTaskDetail, run_complete),
    waits.FAIL_TASK: Command(FailTaskDetail, run_fail),
}


class Trigger(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    workflowId: str = Field(pattern=WORKFLOW_ID)


class TriggerEnvelope(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    coafiTrigger: Trigger
    event: dict[str, Any]


class CommandEvent(BaseModel):
    """The EventBridge event carrying a command (only what the engine reads)."""

    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type")
    source: str = ""
    detail: Any = None


class Outcome(BaseModel):
    """What the API function returns (and, for commands, publishes)."""

    model_config = ConfigDict(defer_build=True)

    ok: bool
    kind: str = Field(description="'trigger' or the command's detail-type")
    result: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None


def handle(event: dict[str, Any], client: WorkflowClient, publish: Callable[[str, dict[str, Any]], None],
           workflow_arns: Mapping[str, str]) -> Outcome:
    """Handle one event delivered to the API function. ``publish(detail_type, detail)`` puts an answer event on
    the bus; ``workflow_arns`` (workflow id -> state machine ARN) is what triggers start."""
    if "coafiTrigger" in event:
        trigger = TriggerEnvelope.model_validate(event)
        event_id = str(trigger.event.get("id") or "")
        if not event_id:
            raise ValueError("trigger event without an 'id': cannot deduplicate its deliveries")
        workflow_id = trigger.coafiTrigger.workflowId
        if workflow_id not in workflow_arns:
            raise LookupError(f"trigger of workflow '{workflow_id}', which this stack does not deploy "
                              f"(COAFI_WORKFLOW_IDS: {', '.join(sorted(workflow_arns)) or 'none'})")
        started = client.start_workflow(workflow_id, trigger.event, idempotency_key=f"event:{event_id}",
                                        state_machine_arn=workflow_arns[workflow_id])
        return Outcome(ok=True, kind="trigger", result=started.model_dump(mode="json"))
    envelope = CommandEvent.model_validate(event)
    context = CommandContext(envelope.id, envelope.detail_type, envelope.source)
    correlation = envelope.detail.get("correlationId") if isinstance(envelope.detail, dict) else None
    answer: dict[str, Any] = {"command": envelope.detail_type, "commandId": envelope.id, "source": envelope.source}
    if isinstance(correlation, str):
        answer["correlationId"] = correlation
    try:
        result = _run(client, envelope, context)
    except (EngineError, WaitError, StateError, CommandRejected, ValidationError) as exc:
        field = getattr(exc, "field", None)
        if isinstance(exc, EngineError) and field:
            field = f"detail.{field}"
        error = {"type": type(exc).__name__, "message": str(exc)[:_MAX_MESSAGE], "field": field}
        publish(COMMAND_FAILED, {**answer, "error": error})
        return Outcome(ok=False, kind=envelope.detail_type, error=error)
    publish(COMMAND_SUCCEEDED, {**answer, "result": result})
    return Outcome(ok=True, kind=envelope.detail_type, result=result)


class CommandRejected(ValueError):
    """A command the engine cannot take as sent; ``field`` names the offending part of the detail."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def _run(client: WorkflowClient, envelope: CommandEvent, context: CommandContext) -> dict[str, Any]:
    command = COMMANDS.get(envelope.detail_type)
    if command is None:
        raise CommandRejected(f"unknown command '{envelope.detail_type}'; known: {', '.join(sorted(COMMANDS))}",
                              "detail-type")
    if not isinstance(envelope.detail, dict):
        raise CommandRejected(f"{envelope.detail_type}: detail must be a JSON object", "detail")
    size = len(json.dumps(envelope.detail).encode())
    if size > MAX_COMMAND_BYTES:
        raise CommandRejected(f"{envelope.detail_type}: detail is {size} bytes, at most {MAX_COMMAND_BYTES}",
                              "detail")
    try:
        model = command.model.model_validate(envelope.detail)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'detail'}: {e['msg']}" for e in exc.errors())
        raise CommandRejected(f"{envelope.detail_type}: invalid detail: {problems}",
                              f"detail.{where}" if where else "detail") from None
    return command.run(client, model, context)


def event_publisher(bus_name: str | None) -> Callable[[str, dict[str, Any]], None]:
    """``publish(detail_type, detail)`` on the app's bus (raises if EventBridge refuses the event)."""

    def publish(detail_type: str, detail: dict[str, Any]) -> None:
        if not bus_name:
            raise RuntimeError("COAFI_EVENT_BUS_NAME is not set: the API function cannot answer commands")
        from coafi import aws

        result = aws.client("events").put_events(Entries=[{
            "EventBusName": bus_name, "Source": ENGINE_SOURCE, "DetailType": detail_type,
            "Detail": json.dumps(detail, default=str),
        }])
        if result.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the {detail_type} answer: {result['Entries'][0]}")

    return publish
