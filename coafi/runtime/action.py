"""The ``@action`` wrapper every action handler uses.

    from coafi.runtime import StepEvent, action

    @action
    def handler(event: StepEvent) -> dict:
        return {"greeting": f"hello {event.input['name']}"}

It parses the step event, records the attempt in the state table's history (STEP_STARTED, then
STEP_SUCCEEDED with the output or STEP_FAILED with the error: one write each), and re-raises failures so
Step Functions' Retry and Catch see the error's class.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coafi.config import function_settings
from coafi.errors import InvalidStepEvent
from coafi.saga import resume
from coafi.state.store import StateStore
from coafi.telemetry.logger import LazyLogger
from coafi.telemetry.tracing import traced


class StepContext(BaseModel):
    # defer_build (here and below): validators built on first use, not at import; the state function imports
    # this module (through the package) and never uses them (cold start: BENCHMARKS.md).
    model_config = ConfigDict(extra="ignore", defer_build=True)

    executionId: str = Field(min_length=1)
    workflowId: str = Field(min_length=1)
    workflowVersion: str = ""
    stepId: str = Field(min_length=1)
    stepName: str = ""
    action: str = ""
    attempt: int = 0
    enteredAt: str | None = None
    errorPolicies: list[dict[str, Any]] = Field(
        default_factory=list, description="The step's error policies (coafi.resilience.runtime)."
    )


class StepEvent(BaseModel):
    """What an action receives: its step's context and parameters, the workflow input, earlier outputs."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    context: StepContext
    parameters: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    steps: dict[str, Any] = Field(default_factory=dict)
    compensation: dict[str, Any] | None = Field(
        None, description="set when the action runs as a compensation: {stepId, stepName, action, output, error} "
        "of the step it undoes (docs/saga-and-dlq.md)")

    def output_of(self, step_id: str, default: Any = None) -> Any:
        """The output of an earlier step, or ``default`` when it did not run (skipped, or not a dependency)."""
        entry = self.steps.get(step_id)
        return entry.get("output", default) if isinstance(entry, dict) else default


ActionFunction = Callable[[StepEvent], Any]
LambdaHandler = Callable[[dict[str, Any], Any], Any]


def parse_step_event(event: Any) -> StepEvent:
    try:
        return StepEvent.model_validate(event)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) + f" ({e['msg']})" for e in exc.errors())
        raise InvalidStepEvent(
            f"not a COAFI step event: {fields}. Actions are invoked by the compiled state machine; "
            "to call one by hand send {'context': {'executionId', 'workflowId', 'stepId'}, 'input': ...}"
        ) from None


def action(fn: ActionFunction) -> LambdaHandler:
    """Turn ``fn(StepEvent) -> output`` into a Lambda handler that records the step's timeline."""
    from coafi.resilience.runtime import guarded  # typed AWS errors; escalation per the step's error policies

    fn = guarded(fn)
    logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)

    @functools.wraps(fn)
    def handler(event: dict[str, Any], lambda_context: Any = None) -> Any:
        step = parse_step_event(event)
        ctx = step.context
        logger.append_keys(execution_id=ctx.executionId, workflow_id=ctx.workflowId, step_id=ctx.stepId,
                           attempt=ctx.attempt + 1)
        logger.set_correlation_id(ctx.executionId)
        settings = function_settings()
        store = StateStore(settings.table_name, retention_days=settings.retention_days,
                           payload_bucket=settings.payload_bucket)
        reused = resume.reused_output(store, ctx.executionId, ctx.stepId)  # `coafi redrive --restart` only
        if not resume.is_missing(reused):
            store.step_started(ctx.executionId, ctx.stepId, step_name=ctx.stepName, action=ctx.action)
            store.step_succeeded(ctx.executionId, ctx.stepId, reused)
            logger.info("step reused: it succeeded in the failed execution this one restarts")
            return reused
        store.step_started(ctx.executionId, ctx.stepId, step_name=ctx.stepName,
                           step_type="task" if step.compensation is None else "compensation", action=ctx.action)
        logger.info("step started")
        from coafi import telemetry

        started = time.monotonic()
        # metrics, logs and traces of the action carry its workflow, step and execution
        with telemetry.step_scope(step), telemetry.batch():
            telemetry.increment_counter("StepStarted")
            if ctx.attempt > 0:
                telemetry.increment_counter("RetryAttempted")
            try:
                with telemetry.trace(f"step {ctx.stepId}"):  # an X-Ray subsegment when tracing is on
                    output = fn(step)
            except Exception as exc:
                error = {"type": type(exc).__name__, "message": str(exc)}
                store.step_failed(ctx.executionId, ctx.stepId, error)
                telemetry.increment_counter("StepFailed")
                logger.warning("step failed", extra={"error_type": error["type"], "error": error["message"]})
                raise
            finally:
                telemetry.observe_histogram("StepDuration", (time.monotonic() - started) * 1000, unit="Milliseconds")
            store.step_succeeded(ctx.executionId, ctx.stepId, output)
            telemetry.increment_counter("StepSucceeded")
        logger.info("step succeeded")
        return output

    return traced(handler)
