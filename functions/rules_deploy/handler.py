"""Rules-deploy function: the custom resource that loads one rule file of statemachines/rules/ into the rule
registry on deploy, and unregisters its rules when the file is removed (coafi/rules/deploy.py)."""

from __future__ import annotations

from typing import Any

from coafi.config import function_settings
from coafi.rules.deploy import CustomResourceEvent, CustomResourceResponse, handle_event, send_response
from coafi.rules.dynamo import DynamoRuleStore
from coafi.telemetry.logger import LazyLogger

logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        request = CustomResourceEvent.model_validate(event)
    except ValueError as exc:  # answer anyway: CloudFormation would otherwise wait an hour for a response
        response = CustomResourceResponse(
            Status="FAILED", Reason=f"not a rule file custom resource request: {exc}"[:3000],
            PhysicalResourceId=str(event.get("PhysicalResourceId") or event.get("LogicalResourceId") or "unknown"),
            StackId=str(event.get("StackId", "")), RequestId=str(event.get("RequestId", "")),
            LogicalResourceId=str(event.get("LogicalResourceId", "")),
        )
        if isinstance(event.get("ResponseURL"), str):
            send_response(event["ResponseURL"], response)
        raise
    logger.append_keys(request_type=request.RequestType, file=request.ResourceProperties.File)
    response = handle_event(request, DynamoRuleStore(function_settings().table_name))
    if response.Status == "FAILED":
        logger.error("rule file not deployed", extra={"reason": response.Reason})
    else:
        logger.info("rule file deployed", extra={"rules": response.Data.get("RuleIds", "")})
    send_response(request.ResponseURL, response)
    return response.model_dump()
