"""Workflow registrar: registers each deployed workflow's version and makes it live, and the deployed error
policies (coafi.engine.registrar); backs the stack's WorkflowRegistry custom resource and ``coafi deploy --local``."""

from __future__ import annotations

from typing import Any

from coafi import aws
from coafi.config import function_settings
from coafi.engine.registrar import handle
from coafi.engine.registry import WorkflowRegistry
from coafi.resilience.registry import PolicyRegistry
from coafi.telemetry.logger import LazyLogger

logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.info("registrar request", extra={"request_type": event.get("RequestType")})
    table = function_settings().table_name
    answer = handle(event, WorkflowRegistry(table), aws.client("stepfunctions"), PolicyRegistry(table))
    if answer.get("Status") == "FAILED":
        logger.error("registrar request failed", extra={"reason": answer.get("Reason")})
    return answer
