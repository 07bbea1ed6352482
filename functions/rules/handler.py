"""Rules function: evaluates a decision's (named or inline) rules against the workflow's facts and returns which
are satisfied; the decision's Choice state routes on that (coafi/rules/step.py, coafi/rules/README.md)."""

from __future__ import annotations

from typing import Any

from coafi.config import function_settings
from coafi.rules.step import RulesRequest, evaluate_request, rules_engine
from coafi.telemetry.logger import LazyLogger
from coafi.telemetry.tracing import traced

logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)


@logger.inject_lambda_context(correlation_id_path="context.executionId")
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = RulesRequest.model_validate(event)
    logger.append_keys(execution_id=request.context.executionId, workflow_id=request.context.workflowId,
                       step_id=request.context.stepId)
    response = evaluate_request(request, rules_engine(function_settings().table_name))
    logger.info("rules evaluated", extra={"satisfied": response.satisfied, "matched": response.matched})
    return response.model_dump(mode="json")
