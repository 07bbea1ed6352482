"""Each workflow's resources in a nested stack of its own, so the app's stack stays small.

A workflow brings about ten resources (its state machine, role and policy, log group, trigger rules and
their target role and policy; schedules): in the app's stack, CloudFormation's 500 resources per stack
stopped the app at about 43 workflows. In a nested stack (``AWS::CloudFormation::Stack``) each workflow
counts as one resource of the app's stack, and its own stack holds the rest (far below 500).

One nested stack per workflow, not a batch of workflows per nested stack: which stack a workflow lives in
never depends on the others, so adding or removing a workflow never moves another one's resources between
stacks (a moved state machine or log group, whose names are fixed, would fail to deploy: CloudFormation
creates the new one before it deletes the old). Each workflow also deploys, updates and rolls back on its
own.

CDK wires the references: the app's functions, event bus, dead-letter queue and schedule group become
parameters of the nested stack; the state machine's ARN an output read by the app's stack (alarms,
dashboard, task dispatcher, the ``WorkflowArns`` output); a sub-workflow's ARN goes from the child's
nested stack through the app's stack to the parent's.
"""

from __future__ import annotations

from aws_cdk import NestedStack
from constructs import Construct

from infra.discovery import Workflow


class WorkflowStack(NestedStack):
    """The nested stack holding one workflow's ``WorkflowConstruct`` (built by the caller, id = workflow id)."""

    def __init__(self, scope: Construct, workflow: Workflow, *, stack_name: str) -> None:
        super().__init__(
            scope,
            workflow.id,
            description=f"COAFI workflow {workflow.id} of {stack_name} ({workflow.file.name})"[:1024],
        )
