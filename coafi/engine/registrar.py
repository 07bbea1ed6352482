"""What a deploy registers: each workflow's version and state machine, made live (docs/engine-api.md), and the
deployed error policies (``coafi.resilience.registry``: the ``ErrorPolicies`` property).

The stack's ``WorkflowRegistry`` custom resource invokes the registrar function on every create/update/delete
(CloudFormation then waits for the answer it PUTs to the request's ``ResponseURL``; every request is answered,
a malformed one with FAILED and the reason). LocalStack's community edition runs no custom resources (COAFI's
embedded one does, through its plugin), so when the resource was skipped ``coafi deploy --local`` invokes the same
function directly with ``{"RequestType": "Sync", "ResourceProperties": <the resource's properties>}``, read from the
deployed template (``sync_deployed_stack``: each state machine ARN, a reference there, is derived from its fixed
name). Nothing per workflow is in the function's environment: Lambda limits it to 4 KB.

For each workflow the registrar publishes a Step Functions version of the state machine's current revision
(idempotent: an unchanged definition gets its existing version back) and registers that version's ARN, so a
later ``start --version <old>`` runs the old definition, not the newest one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coafi.cfn_response import put_response
from coafi.engine.registry import WorkflowRegistry

if TYPE_CHECKING:
    from coafi.resilience.registry import PolicyRegistry

#: CloudFormation accepts at most 4,096 bytes of a custom resource's response: its ``Data`` holds counts.
MAX_RESPONSE_BYTES = 4096
PHYSICAL_ID = "coafi-workflow-registry"
RESOURCE_TYPE = "Custom::CoafiWorkflowRegistry"


class DeployedWorkflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stateMachineArn: str = Field(min_length=1)
    version: str = Field(min_length=1)
    definitionSha256: str = ""


class RegistrarProperties(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Source: str = "deploy"
    Workflows: dict[str, DeployedWorkflow] = Field(default_factory=dict)
    #: The deployed error policies (``coafi.resilience.registry.PolicySet`` as JSON text: CloudFormation turns
    #: every property value into a string). None: leave the policy partition as it is (a request from an older
    #: template, or a Sync without them).
    ErrorPolicies: str | None = None


class RegistrarEvent(BaseModel):
    """A CloudFormation custom resource request, or ``{"RequestType": "Sync", "ResourceProperties"}`` from
    ``coafi deploy --local``."""

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


def apply_policies(policies: PolicyRegistry, properties: RegistrarProperties, *, delete: bool = False) -> int:
    """Register (or, on delete, remove) the properties' policy set; how many policies it holds."""
    if properties.ErrorPolicies is None:
        return 0
    from coafi.resilience.registry import PolicySet

    policy_set = PolicySet.model_validate_json(properties.ErrorPolicies)
    if delete:
        policies.remove(policy_set)
    else:
        policies.apply(policy_set)
    return len(policy_set.policies)


def handle(event: dict[str, Any], registry: WorkflowRegistry, sfn: Any,
           policies: PolicyRegistry | None = None) -> dict[str, Any]:
    """Do what the request asks; answer CloudFormation (SUCCESS or FAILED, never silence) when it asked.
    ``policies``: the error policy registry (default: on the registry's table)."""
    try:
        request = RegistrarEvent.model_validate(event)
    except ValidationError as exc:  # answer anyway: CloudFormation would otherwise wait an hour
        reason = f"not a workflow registry request: {exc}"
        url = event.get("ResponseURL") if isinstance(event, dict) else None
        if not isinstance(url, str) or not url:
            raise
        _respond(url, event, "FAILED", {}, reason)
        return {"Status": "FAILED", "Reason": reason}
    if policies is None:
        from coafi.resilience.registry import PolicyRegistry

        policies = PolicyRegistry(registry.table_name)
    properties = request.ResourceProperties
    try:
        if properties is None:
            raise ValueError(f"a {request.RequestType} request without ResourceProperties: nothing says what to "
                             "register (coafi deploy --local sends the registry resource's properties)")
        if request.RequestType == "Delete":
            data: dict[str, Any] = {"Unregistered": ",".join(remove(registry, properties))}
            apply_policies(policies, properties, delete=True)
        else:
            data = {"Registered": json.dumps(sync(registry, sfn, properties))}
            old = request.OldResourceProperties
            if request.RequestType == "Update" and old is not None:  # workflows the stack no longer deploys
                gone = RegistrarProperties(Source=old.Source, Workflows={
                    k: v for k, v in old.Workflows.items() if k not in properties.Workflows})
                data["Unregistered"] = ",".join(remove(registry, gone))
            data["ErrorPolicies"] = str(apply_policies(policies, properties))
    except Exception as exc:
        if request.ResponseURL:
            reason = f"{type(exc).__name__}: {exc}"
            _respond(request.ResponseURL, event, "FAILED", {}, reason)
            return {"Status": "FAILED", "Reason": reason}
        raise
    if request.ResponseURL:
        _respond(request.ResponseURL, event, "SUCCESS", response_data(data), "")
    return {"Status": "SUCCESS", "Data": data}


def response_data(data: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation gets back: ``data`` if its response fits 4,096 bytes, else how many workflows were
    registered / unregistered (each version ARN takes ~100 bytes, so a stack of a few dozen workflows would not
    fit; nothing reads them with ``Fn::GetAtt``, and the registry holds them). Half the limit is kept for the
    rest of the response (ids, reason)."""
    if len(json.dumps(data)) <= MAX_RESPONSE_BYTES // 2:
        return data
    registered = json.loads(data.get("Registered") or "{}")
    unregistered = [w for w in str(data.get("Unregistered") or "").split(",") if w]
    return {**{k: v for k, v in data.items() if k not in ("Registered", "Unregistered")},
            "RegisteredCount": str(len(registered)), "UnregisteredCount": str(len(unregistered))}


def _respond(url: str, event: dict[str, Any], status: str, data: dict[str, Any], reason: str) -> None:
    """PUT the answer to CloudFormation's pre-signed URL. The identifiers are echoed from the raw request, so a
    request that is not a valid one is answered too; the physical id never changes (no replacement)."""
    body = json.dumps({
        "Status": status, "Reason": reason[:3000] or status, "PhysicalResourceId": PHYSICAL_ID,
        "StackId": str(event.get("StackId", "")), "RequestId": str(event.get("RequestId", "")),
        "LogicalResourceId": str(event.get("LogicalResourceId", "")), "Data": data,
    }).encode()
    put_response(url, body, timeout=20)


class RegistryResource(BaseModel):
    """The stack's workflow registry custom resource as deployed."""

    logical_id: str
    physical_id: str
    error_policies: str | None  # its ErrorPolicies property (plain JSON text in the template)
    #: Its properties as written in the template (``Workflows``' state machine ARNs are references there).
    properties: dict[str, Any] = {}


def registry_resource(stack_name: str) -> RegistryResource | None:
    """The stack's ``Custom::CoafiWorkflowRegistry`` resource (found in the deployed template, the one place that
    names its type as written), or None if it has none."""
    from coafi import aws

    cfn = aws.client("cloudformation")
    body: Any = cfn.get_template(StackName=stack_name)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        if resource.get("Type") != RESOURCE_TYPE:
            continue
        detail = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        properties = resource.get("Properties", {})
        policies = properties.get("ErrorPolicies")
        return RegistryResource(logical_id=logical_id,
                                physical_id=str(detail["StackResourceDetail"].get("PhysicalResourceId") or ""),
                                error_policies=policies if isinstance(policies, str) else None,
                                properties=properties)
    return None


def deployed_properties(resource: RegistryResource, stack_name: str, stack_id: str) -> RegistrarProperties:
    """The properties CloudFormation would have sent the registrar, from the deployed template: the
    ``Workflows`` whose ``stateMachineArn`` is a reference (to the workflow's nested stack) get the ARN of their
    fixed-name state machine (``coafi.naming``), in the stack's partition, region and account (from its id)."""
    from coafi import naming

    parts = stack_id.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise RuntimeError(f"stack {stack_name}: cannot read partition, region and account from its id {stack_id!r}")
    partition, region, account = parts[1], parts[3], parts[4]
    raw = resource.properties
    workflows: dict[str, Any] = {}
    for workflow_id, entry in dict(raw.get("Workflows") or {}).items():
        entry = dict(entry)
        if not isinstance(entry.get("stateMachineArn"), str):
            entry["stateMachineArn"] = naming.state_machine_arn(
                partition, region, account, naming.state_machine_name(stack_name, workflow_id))
        workflows[workflow_id] = entry
    source = raw.get("Source")
    return RegistrarProperties.model_validate({
        "Source": source if isinstance(source, str) else f"stack:{stack_name}",
        "Workflows": workflows, "ErrorPolicies": resource.error_policies})


def sync_deployed_stack(stack_name: str) -> dict[str, Any]:
    """``coafi deploy --local``: if the local cloud skipped the stack's registry custom resource (LocalStack's
    community edition without COAFI's plugin), run the deployed registrar function once with what the resource
    would have sent (``deployed_properties``). Skipped when the resource was answered by the function (its
    physical id is the registrar's): then everything is registered already. Raises if the stack has no registrar
    or the function fails."""
    from coafi import aws

    stack = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    function_name = outputs.get("RegistrarFunctionName")
    resource = registry_resource(stack_name)
    if not function_name or resource is None:
        raise RuntimeError(f"stack {stack_name} has no RegistrarFunctionName output: deploy the current app")
    if resource.physical_id == PHYSICAL_ID:
        return {"Status": "SKIPPED", "Reason": f"{resource.logical_id} was answered by the registrar on deploy"}
    properties = deployed_properties(resource, stack_name, str(stack.get("StackId") or ""))
    request = {"RequestType": "Sync", "ResourceProperties": properties.model_dump(mode="json")}
    response = aws.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(request))
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise RuntimeError(f"registering the deployed workflows failed ({function_name}): {payload}")
    result: dict[str, Any] = payload
    return result
