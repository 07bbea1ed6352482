"""Escalation: when an error policy's threshold is crossed, an ``Escalation`` event goes to the app's event bus
(source ``coafi.errors``); the CDK app forwards those events to the escalation SNS topic.

The compiler passes a step's policies in its step event (``context.errorPolicies``: id, errorTypes, attempts =
the escalation threshold or null); the action wrapper calls :func:`escalate_if_due` with the failed attempt. The
first policy whose errorTypes match the error (a name, or a category the error belongs to) decides; it escalates
- ``attempts: N``: once per step and execution, when the failed attempt is the N-th;
- ``failures: N, windowSeconds: W``: once per window of W seconds, at the N-th matching failure of the workflow's
  steps in it, across executions (an atomic counter in the state table).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from coafi.resilience.classification import ErrorCategory, category_of_name, classify

if TYPE_CHECKING:
    from coafi.runtime.action import StepEvent

SOURCE = "coafi.errors"
DETAIL_TYPE = "Escalation"
MAX_MESSAGE_CHARS = 2000


class EscalationRule(BaseModel):
    """One escalating policy of a step, as the compiler passes it (``coafi.resilience.compile``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    errorTypes: list[str] = Field(min_length=1)
    attempts: int | None = Field(None, ge=1, description="The escalation threshold in failed attempts of a step; "
                                 "None (and no failures): the policy never escalates (its errorTypes still decide "
                                 "which policy handles an error).")
    failures: int | None = Field(None, ge=1, description="The threshold in failures across executions...")
    windowSeconds: int = Field(300, ge=1, description="...within tumbling windows of this length.")

    def matches(self, name: str, category: ErrorCategory) -> bool:
        if "States.ALL" in self.errorTypes or name in self.errorTypes or category.value in self.errorTypes:
            return True
        known = category_of_name(name)
        return known is not None and known.value in self.errorTypes


class EscalationError(BaseModel):
    type: str
    message: str
    category: ErrorCategory


class EscalationDetail(BaseModel):
    """The ``detail`` of an ``Escalation`` event."""

    executionId: str
    workflowId: str
    workflowVersion: str = ""
    stepId: str
    stepName: str = ""
    action: str = ""
    policyId: str
    error: EscalationError
    attempts: int = Field(description="Failed attempts of the step so far (this one included).")
    threshold: int = Field(description="The policy's escalationThreshold (attempts, or failures).")
    failures: int | None = Field(None, description="Failures of the workflow counted in the window (failures "
                                 "thresholds only).")
    windowSeconds: int | None = None
    time: str


def matching_rule(rules: list[EscalationRule], name: str, category: ErrorCategory) -> EscalationRule | None:
    """The policy that handles this error: the first whose errorTypes match it."""
    for rule in rules:
        if rule.matches(name, category):
            return rule
    return None


def _now() -> float:
    return time.time()


def count_failure(workflow_id: str, rule: EscalationRule, *, now: float | None = None,
                  table_name: str | None = None) -> int:
    """Count one failure for a ``failures`` threshold: one atomic ADD on the window's counter
    (``PK = ESCALATION#<workflowId>#<policyId>``, ``SK = WINDOW#<window start, epoch s>``, expiring a day after
    the window); the count after it. Exactly one failure of a window sees the threshold's count."""
    from coafi import aws

    if table_name is None:
        from coafi.config import function_settings

        table_name = function_settings().table_name
    moment = _now() if now is None else now
    start = int(moment // rule.windowSeconds) * rule.windowSeconds
    response = aws.client("dynamodb").update_item(
        TableName=table_name,
        Key={"PK": {"S": f"ESCALATION#{workflow_id}#{rule.id}"}, "SK": {"S": f"WINDOW#{start}"}},
        UpdateExpression="ADD failures :one SET expiresAt = if_not_exists(expiresAt, :expires)",
        ExpressionAttributeValues={":one": {"N": "1"},
                                   ":expires": {"N": str(start + rule.windowSeconds + 86_400)}},
        ReturnValues="UPDATED_NEW",
    )
    return int(response["Attributes"]["failures"]["N"])


def escalation_for(step: StepEvent, exc: BaseException, rules_data: list[Any]) -> EscalationDetail | None:
    """The Escalation this failure raises, or None."""
    if not rules_data:
        return None
    rules = [EscalationRule.model_validate(r) for r in rules_data]
    ctx = step.context
    attempts = ctx.attempt + 1
    name = type(exc).__name__
    category = classify(exc)
    rule = matching_rule(rules, name, category)
    if rule is None:
        return None
    failures: int | None = None
    if rule.attempts is not None:
        if attempts != rule.attempts:
            return None
        threshold = rule.attempts
    elif rule.failures is not None:
        failures = count_failure(ctx.workflowId, rule)
        if failures != rule.failures:
            return None
        threshold = rule.failures
    else:
        return None
    return EscalationDetail(
        executionId=ctx.executionId, workflowId=ctx.workflowId, workflowVersion=ctx.workflowVersion,
        stepId=ctx.stepId, stepName=ctx.stepName, action=ctx.action, policyId=rule.id,
        error=EscalationError(type=name, message=str(exc)[:MAX_MESSAGE_CHARS], category=category),
        attempts=attempts, threshold=threshold, failures=failures,
        windowSeconds=rule.windowSeconds if failures is not None else None,
        time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def publish(detail: EscalationDetail, event_bus_name: str) -> None:
    """Put the Escalation event on the bus; raises when EventBridge refuses it."""
    from coafi import aws

    response = aws.client("events").put_events(Entries=[{
        "EventBusName": event_bus_name, "Source": SOURCE, "DetailType": DETAIL_TYPE,
        "Detail": detail.model_dump_json(), "Resources": [detail.executionId],
    }])
    if response.get("FailedEntryCount"):
        entry = response.get("Entries", [{}])[0]
        raise RuntimeError(f"EventBridge refused the Escalation event: {entry.get('ErrorCode')}: "
                           f"{entry.get('ErrorMessage')}")


def escalate_if_due(step: StepEvent, exc: BaseException, rules_data: list[Any]) -> EscalationDetail | None:
    """Publish the Escalation of this failure if a policy's threshold is crossed; the event sent, or None.

    Never raises: a bus that cannot be reached is logged (and counted as ``EscalationFailed``), and the step's
    own error goes on to Step Functions unchanged."""
    from coafi import telemetry

    try:
        detail = escalation_for(step, exc, rules_data)
        if detail is None:
            return None
        from coafi.config import function_settings

        bus = function_settings().event_bus_name
        if not bus:
            raise RuntimeError("COAFI_EVENT_BUS_NAME is not set: no bus to send the Escalation to")
        publish(detail, bus)
    except Exception as problem:
        try:
            telemetry.increment_counter("EscalationFailed")
            telemetry.log_error("escalation not sent", error=problem)
        except Exception:
            pass
        return None
    telemetry.increment_counter("ErrorEscalated", {"policy": detail.policyId})
    telemetry.log_warning("error escalated", policy=detail.policyId, attempts=detail.attempts,
                          error_type=detail.error.type)
    return detail
