"""EventBridge commands of the waiting steps: ``SignalWorkflow``, ``CompleteTask`` and ``FailTask``.

Each is a pydantic model of the event's ``detail`` and a handler taking the validated model. The API Lambda's
registry maps detail-type -> (model, handler) (``WAIT_COMMANDS``); a handler raises ``coafi.engine.waits``
errors (``WaitError``) or pydantic's ``ValidationError`` for the API Lambda to publish back as events.

EventBridge delivers at least once: pass the event's ``id`` as ``signalId`` so a redelivered SignalWorkflow is
accepted once (reported DUPLICATE). CompleteTask/FailTask by step are claimed with a conditional write, so a
redelivered one fails with ``NotWaiting`` instead of completing anything twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from coafi.engine.waits import (
    CompleteTaskRequest,
    FailTaskRequest,
    SignalOutcome,
    SignalRequest,
    TaskOutcome,
    Waits,
)

SIGNAL_WORKFLOW = "SignalWorkflow"
COMPLETE_TASK = "CompleteTask"
FAIL_TASK = "FailTask"


class SignalWorkflowCommand(SignalRequest):
    """``detail`` of a SignalWorkflow event: ``{"executionId", "name", "payload"?, "signalId"?}``."""


class CompleteTaskCommand(CompleteTaskRequest):
    """``detail`` of a CompleteTask event: ``{"taskToken"}`` or ``{"executionId", "stepId"}``, and ``"result"``."""


class FailTaskCommand(FailTaskRequest):
    """``detail`` of a FailTask event: the task (as CompleteTask), ``"error"`` and ``"cause"``."""


def signal_workflow_command(command: SignalWorkflowCommand, waits: Waits | None = None) -> SignalOutcome:
    return (waits or Waits.from_env()).signal_workflow(command)


def complete_task_command(command: CompleteTaskCommand, waits: Waits | None = None) -> TaskOutcome:
    return (waits or Waits.from_env()).complete_task(command)


def fail_task_command(command: FailTaskCommand, waits: Waits | None = None) -> TaskOutcome:
    return (waits or Waits.from_env()).fail_task(command)


#: detail-type -> (model of ``detail``, handler taking the validated model).
WAIT_COMMANDS: dict[str, tuple[type[BaseModel], Callable[..., Any]]] = {
    SIGNAL_WORKFLOW: (SignalWorkflowCommand, signal_workflow_command),
    COMPLETE_TASK: (CompleteTaskCommand, complete_task_command),
    FAIL_TASK: (FailTaskCommand, fail_task_command),
}
