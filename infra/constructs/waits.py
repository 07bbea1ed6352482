"""What the state function needs for callback and signal steps (docs/waits.md): put ``TaskTokenIssued`` on the
app's bus, and complete the task token of a signal step that finds its signal already buffered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam

from infra import nag
from infra.constructs.function import CoafiFunction

if TYPE_CHECKING:
    from infra.constructs.core import Core

#: What completing a task token takes (SendTaskHeartbeat is not used by the state function).
TASK_RESPONSE_ACTIONS = ["states:SendTaskSuccess", "states:SendTaskFailure"]


def machines_pattern(stack_name: str) -> str:
    """The name pattern of the stack's state machines (``<stackName>-<workflowId>``)."""
    return f"{stack_name}-*"


def grant_waits(core: Core, function: CoafiFunction) -> None:
    stack = Stack.of(function)
    function.function.add_environment("COAFI_EVENT_BUS_NAME", core.event_bus.event_bus_name)
    core.event_bus.grant_put_events_to(function.function)
    # By name pattern, not by the machines' ARNs: the machines reference this function, so naming them here
    # would be a dependency cycle. Task responses are scoped to the state machine a token belongs to.
    pattern = machines_pattern(core.config.stack_name)
    machines = stack.format_arn(service="states", resource="stateMachine", resource_name=pattern,
                                arn_format=ArnFormat.COLON_RESOURCE_NAME)
    function.function.add_to_role_policy(iam.PolicyStatement(actions=TASK_RESPONSE_ACTIONS, resources=[machines]))
    nag.suppress(
        function.role,
        "IAM5",
        "A signal step that finds its signal buffered completes its own task token (SendTaskSuccess/Failure). "
        "Tokens belong to the stack's state machines, which reference this function, so they are named by the "
        f"stack's prefix ({pattern}) instead of by ARN (a dependency cycle); no other machines match.",
        [f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:{pattern}"],
        children=True,
    )
