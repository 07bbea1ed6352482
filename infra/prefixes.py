"""IAM resources for "every state machine / execution / action function of this app", named by the stack's
fixed-name prefixes (``coafi.naming``): one resource whatever the number of workflows and actions, so no role's
policy grows with the app (IAM's 10,240-character limit per role, ``infra.iam_size``).

``<stack>_`` starts the name of every state machine of the stack and of no other stack's: stack names hold no
``_`` (CloudFormation's rule, checked again by ``coafi.naming``), so ``Coafi_*`` does not match ``Coafi-dev_x``.
The patterns reach the app's own resources only; the grants stay action by action (what each function calls).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from constructs import IConstruct

from coafi import naming

#: cdk-nag's rendering of ``arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:``.
_NAG_ARN = "Resource::arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"


def state_machines(scope: IConstruct, stack_name: str) -> str:
    """``arn:...:stateMachine:<stack>_*``: the stack's state machines and their versions and aliases
    (``<machine ARN>:<version>``)."""
    return Stack.of(scope).format_arn(service="states", resource="stateMachine",
                                      resource_name=naming.state_machine_prefix(stack_name) + "*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)


def executions(scope: IConstruct, stack_name: str) -> str:
    """``arn:...:execution:<stack>_*:*``: every execution of the stack's state machines."""
    return Stack.of(scope).format_arn(service="states", resource="execution",
                                      resource_name=naming.state_machine_prefix(stack_name) + "*:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)


def action_functions(scope: IConstruct, stack_name: str) -> str:
    """``arn:...:function:<stack>_action-*``: the stack's action functions (and their versions and aliases)."""
    return Stack.of(scope).format_arn(service="lambda", resource="function",
                                      resource_name=naming.action_function_prefix(stack_name) + "*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)


def state_machines_finding(stack_name: str) -> str:
    """cdk-nag's IAM5 finding for ``state_machines``."""
    return _NAG_ARN.format(service="states") + f"stateMachine:{naming.state_machine_prefix(stack_name)}*"


def executions_finding(stack_name: str) -> str:
    return _NAG_ARN.format(service="states") + f"execution:{naming.state_machine_prefix(stack_name)}*:*"


def action_functions_finding(stack_name: str) -> str:
    return _NAG_ARN.format(service="lambda") + f"function:{naming.action_function_prefix(stack_name)}*"


#: Why a prefix is as narrow as the list of ARNs it replaces (the reason of each IAM5 suppression).
SCOPE_REASON = (
    "names every {what} of this app by the stack's fixed-name prefix ('{prefix}*', coafi.naming) instead of one ARN "
    "each, so the policy stays the same size however many there are (IAM allows 10,240 characters per role); stack "
    "names hold no '_', so no other stack's resources match."
)


def reason(what: str, prefix: str) -> str:
    return SCOPE_REASON.format(what=what, prefix=prefix)
