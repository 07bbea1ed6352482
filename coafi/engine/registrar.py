"""What a deploy registers: each workflow's version and state machine, made live (docs/engine-api.md).

The stack's ``WorkflowRegistry`` custom resource invokes the registrar function on every create/update/delete
(CloudFormation then waits for the answer it PUTs to the request's ``ResponseURL``). LocalStack's community
edition runs no custom resources, so ``coafi deploy --local`` invokes the same function directly with
``{"RequestType": "Sync"}``: it registers what its environment (``COAFI_DEPLOYED_WORKFLOWS``) describes.

For each workflow the registrar publishes a Step Functions version of the state machine's current revision
(idempotent: an unchanged definition gets its existing version back) and registers that version's ARN, so a
later ``start --version <old>`` runs the old definition, not the newest one.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coafi.cfn_response import put_response
from coafi.engine.registry import WorkflowRegistry

DEPLOYED_WORKFLOWS_ENV = "COAFI_DEPLOYED_WORKFLOWS"
PHYSICAL_ID = "coafi-workflow-registry"


class DeployedWorkflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stateMachineArn: str = Field(min_length=1)
    version: str = Field(min_length=1)
    definitionSha256: str = ""


class RegistrarProperties(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Source: str = "deploy"
    Workflows: dict[str, DeployedWorkflow] = Field(default_factory=dict)


class RegistrarEvent(BaseModel):
    """A CloudFormation custom resource request, or ``{"RequestType": "Sync"}`` from ``coafi deploy``."""

    model_config = ConfigDict(extra="ignore")

    RequestType: Literal["Create", "Update", "Delete", "Sync"]
    ResponseURL: str | None = None
    StackId: str = ""
    RequestId: str = ""
    LogicalResourceId: str = ""
    ResourceProperties: RegistrarProperties | None = None
    OldResourceProperties: RegistrarProperties | None = None


def sync(registry: WorkflowRegistry, sfn: Any, properties: RegistrarProperties, *, publish: bool = True
         ) -> dict[str, str]:
    """Register every deployed workflow's version (published as a Step Functions version when ``publish``) and
    make it live; returns workflow id -> the registered ARN."""
    registered: dict[str, str] = {}
    for workflow_id, deployed in sorted(properties.Workflows.items()):
        arn = deployed.stateMachineArn
        if publish:
            description = f"{deployed.version} ({deployed.definitionSha256[:12] or 'definition'})"
            arn = str(sfn.publish_state_machine_version(stateMachineArn=arn, description=description[:256])
                      ["stateMachineVersionArn"])
        registry.register_workflow(workflow_id, deployed.version, arn, make_live=True,
                                   definition_sha256=deployed.definitionSha256, source=properties.Source)
        registered[workflow_id] = arn
    return registered


def remove(registry: WorkflowRegistry, properties: RegistrarProperties) -> list[str]:
    """Stack deletion: unregister the workflows it deployed (those already gone are skipped)."""
    from coafi.engine.errors import WorkflowNotRegistered

    removed: list[str] = []
    for workflow_id in sorted(properties.Workflows):
        try:
            registry.unregister_workflow(workflow_id)
        except WorkflowNotRegistered:
            continue
        removed.append(workflow_id)
    return removed


def handle(event: dict[str, Any], registry: WorkflowRegistry, sfn: Any) -> dict[str, Any]:
    """Do what the request asks; answer CloudFormation (SUCCESS or FAILED, never silence) when it asked."""
    request = RegistrarEvent.model_validate(event)
    properties = request.ResourceProperties
    if properties is None:
        properties = RegistrarProperties.model_validate(json.loads(os.environ.get(DEPLOYED_WORKFLOWS_ENV) or "{}"))
    try:
        if request.RequestType == "Delete":
            data: dict[str, Any] = {"Unregistered": ",".join(remove(registry, properties))}
        else:
            data = {"Registered": json.dumps(sync(registry, sfn, properties))}
            old = request.OldResourceProperties
            if request.RequestType == "Update" and old is not None:  # workflows the stack no longer deploys
                gone = RegistrarProperties(Source=old.Source, Workflows={
                    k: v for k, v in old.Workflows.items() if k not in properties.Workflows})
                data["Unregistered"] = ",".join(remove(registry, gone))
    except Exception as exc:
        if request.ResponseURL:
            _respond(request, "FAILED", {}, f"{type(exc).__name__}: {exc}")
            return {"Status": "FAILED", "Reason": str(exc)}
        raise
    if request.ResponseURL:
        _respond(request, "SUCCESS", data, "")
    return {"Status": "SUCCESS", "Data": data}


def _respond(request: RegistrarEvent, status: str, data: dict[str, Any], reason: str) -> None:
    assert request.ResponseURL is not None
    body = json.dumps({
        "Status": status, "Reason": reason[:3000] or status, "PhysicalResourceId": PHYSICAL_ID,
        "StackId": request.StackId, "RequestId": request.RequestId,
        "LogicalResourceId": request.LogicalResourceId, "Data": data,
    }).encode()
    put_response(request.ResponseURL, body, timeout=20)


def sync_deployed_stack(stack_name: str) -> dict[str, Any]:
    """Run the deployed registrar function once (``coafi deploy --local``: LocalStack's community edition skips
    the custom resource). Raises if the stack has no registrar or the function fails."""
    from coafi import aws

    stack = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    function_name = outputs.get("RegistrarFunctionName")
    if not function_name:
        raise RuntimeError(f"stack {stack_name} has no RegistrarFunctionName output: deploy the current app")
    response = aws.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps({"RequestType": "Sync"}))
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise RuntimeError(f"registering the deployed workflows failed ({function_name}): {payload}")
    result: dict[str, Any] = payload
    return result
