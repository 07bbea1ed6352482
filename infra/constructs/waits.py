"""What the state function needs for callback and signal steps (docs/waits.md): put ``TaskTokenIssued`` on the
app's bus, and complete the task token of a signal step that finds its signal already buffered.

``grant_task_responses`` is also what any other function answering waiting steps needs (e.g. an API Lambda
handling SignalWorkflow / CompleteTask / FailTask commands, with ``heartbeat=True`` for heartbeats).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_iam as iam

from coafi import naming
from infra import nag, prefixes
from infra.constructs.function import CoafiFunction

if TYPE_CHECKING:
    from infra.constructs.core import Core

#: What completing a task token takes.
TASK_RESPONSE_ACTIONS = ["states:SendTaskSuccess", "states:SendTaskFailure"]
HEARTBEAT_ACTION = "states:SendTaskHeartbeat"


def grant_task_responses(core: Core, function: CoafiFunction, *, heartbeat: bool = False) -> None:
    """SendTaskSuccess / SendTaskFailure (and SendTaskHeartbeat) for tokens of the stack's state machines only."""
    stack_name = core.config.stack_name
    pattern = naming.state_machine_prefix(stack_name) + "*"
    machines = prefixes.state_machines(function, stack_name)
    actions = [*TASK_RESPONSE_ACTIONS, *([HEARTBEAT_ACTION] if heartbeat else [])]
    function.function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[machines]))
    nag.suppress(
        function.role,
        "IAM5",
        "Task tokens belong to the stack's state machines, which reference the state function, so they are "
        f"named by the stack's prefix ({pattern}) instead of by ARN (a dependency cycle); stack names hold no '_', so "
        "no other stack's machines match.",
        [prefixes.state_machines_finding(stack_name)],
        children=True,
    )


def grant_waits(core: Core, function: CoafiFunction) -> None:
    """The state function's grants: the app's bus (TaskTokenIssued) and task responses (buffered signals)."""
    function.function.add_environment("COAFI_EVENT_BUS_NAME", core.event_bus.event_bus_name)
    core.event_bus.grant_put_events_to(function.function)
    grant_task_responses(core, function)
