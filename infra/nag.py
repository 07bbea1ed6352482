"""Narrow cdk-nag suppressions: one rule, one resource, and (for IAM5) the exact findings it may hide."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Names, Stack, Token
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

#: AWS-defined actions that have no resource-level permissions, so their statements must use "*".
XRAY_REASON = (
    "X-Ray PutTraceSegments/PutTelemetryRecords (and sampling rule reads) support no resource-level "
    "permissions: AWS requires Resource '*'. Added by CDK for active tracing."
)


def suppress(
    construct: IConstruct,
    rule: str,
    reason: str,
    applies_to: Sequence[str] | None = None,
    *,
    children: bool = False,
) -> None:
    """Suppress ``AwsSolutions-<rule>`` on ``construct`` (and its children when ``children``)."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=f"AwsSolutions-{rule}", reason=reason,
                            applies_to=list(applies_to) if applies_to else None)],
        apply_to_children=children,
    )


def arn_findings(resource: IConstruct, suffix: str, *, seen_from: IConstruct) -> list[str]:
    """``arn_finding`` for a policy of ``seen_from``. When that is in a nested stack of ``resource``'s stack
    (infra/workflow_stacks.py), cdk-nag checks the policy twice: before CDK turns the reference into a
    parameter of the nested stack (the finding names ``<LogicalId.Arn>``) and after (``<referenceto<unique
    id of the resource>Arn>``, CDK's name for that parameter); both name the same ARN."""
    finding = arn_finding(resource, suffix)
    if Stack.of(seen_from) is Stack.of(resource):
        return [finding]
    default_child = resource.node.default_child
    element = default_child if default_child is not None else resource
    return [finding, f"Resource::<referenceto{Names.node_unique_id(element.node)}Arn>{suffix}"]


def arn_finding(resource: IConstruct, suffix: str = "") -> str:
    """cdk-nag's name for a wildcard finding on ``<LogicalId.Arn><suffix>`` of ``resource``'s CFN resource."""
    stack = Stack.of(resource)
    default_child = resource.node.default_child
    element = default_child if default_child is not None else resource
    logical_id = stack.resolve(stack.get_logical_id(element))  # type: ignore[arg-type]
    if not isinstance(logical_id, str) or Token.is_unresolved(logical_id):
        raise ValueError(f"logical id of {resource.node.path} is not resolvable yet")
    return f"Resource::<{logical_id}.Arn>{suffix}"
