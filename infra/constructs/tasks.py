"""Tasks: the dispatcher function on the core task queue, and the role EventBridge Scheduler uses to put
delayed and cron tasks on that queue (coafi/tasks/README.md).

- **Dispatcher** (``functions/dispatcher``, COAFI's own code, not the app's): SQS event source on the task
  queue (batches of 10, ``ReportBatchItemFailures``). Its role may consume that queue; read and write only the
  task, worker and idempotency items of the state table (``dynamodb:LeadingKeys``: ``TASK#*``, ``WORKERS``,
  ``IDEMPOTENCY#tasks``); invoke the app's action functions and start its state machines (by the stack's
  prefixes ``<stack>_action-*`` and ``<stack>_*``: infra/prefixes.py), whose fixed names it derives from
  ``COAFI_ACTIONS`` / ``COAFI_ACTION_FUNCTION_PREFIX`` and
  ``COAFI_WORKFLOW_IDS`` / ``COAFI_STATE_MACHINE_ARN_PREFIX`` (``coafi.naming``: no maps, Lambda's 4 KB
  environment).
- **Idempotency**: Powertools records live in the state table under ``IDEMPOTENCY#tasks`` (its TTL attribute
  expires them) rather than in a table of their own: no extra table to encrypt, back up and grant, and the
  dispatcher's table access stays one statement scoped by leading keys.
- **Scheduler role**: assumable by EventBridge Scheduler only for schedules of this account's app schedule
  group; may only ``sqs:SendMessage`` to the task queue and to its dead-letter queue (Scheduler sends
  undeliverable occurrences there with the same role).

Outputs: ``TaskSchedulerRoleArn``, ``TaskQueueArn``, ``DeadLetterQueueArn``, ``TaskDispatcherFunctionName``
(read by ``coafi.tasks.TaskSettings.from_stack``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from coafi import naming
from coafi.tasks.settings import OUTPUT_DEAD_LETTER_ARN, OUTPUT_DISPATCHER, OUTPUT_QUEUE_ARN, OUTPUT_SCHEDULER_ROLE
from coafi.tasks.store import DISPATCHER_LEADING_KEYS
from infra import nag, prefixes
from infra.constructs.actions import Actions
from infra.constructs.core import Core
from infra.constructs.engine import workflow_environment
from infra.constructs.function import CoafiFunction, partition_statement

if TYPE_CHECKING:
    from infra.constructs.workflow import WorkflowConstruct

DISPATCHER_CODE_DIR = Path(__file__).resolve().parents[2] / "functions" / "dispatcher"
BATCH_SIZE = 10
DISPATCH_CONCURRENCY = 5
#: What the dispatcher and Powertools idempotency do with their items; no Scan (LeadingKeys cannot bound it).
TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                 "dynamodb:Query"]


class DispatcherFunction(CoafiFunction):
    """A CoafiFunction whose state table access is limited to the task partitions."""

    def _grant_state_table(self, table: dynamodb.ITableV2) -> None:
        self.function.add_to_role_policy(partition_statement(table, TABLE_ACTIONS, list(DISPATCHER_LEADING_KEYS)))


class Tasks(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, core: Core, actions: Actions,
                 workflows: Mapping[str, WorkflowConstruct]) -> None:
        super().__init__(scope, construct_id)
        self.core = core
        self.action_functions = {name: f.function for name, f in sorted(actions.functions.items())}
        self.state_machines = {wf_id: wf.state_machine for wf_id, wf in sorted(workflows.items())}
        self.scheduler_role = self._build_scheduler_role()
        self.dispatcher = self._build_dispatcher()
        self._grant_targets()
        self._build_outputs()

    # -- dispatcher -------------------------------------------------------------------------------------------
    def _build_dispatcher(self) -> DispatcherFunction:
        stack_name = self.core.config.stack_name
        environment = {
            **self.core.function_environment("coafi-dispatcher", event_bus=False),
            # names, not maps of function names and ARNs (Lambda's 4 KB environment): coafi.naming
            naming.ACTIONS_ENV: naming.join_names(self.action_functions),
            naming.ACTION_FUNCTION_PREFIX_ENV: naming.action_function_prefix(stack_name),
            **workflow_environment(self, stack_name, self.state_machines),
            "COAFI_DISPATCH_CONCURRENCY": str(DISPATCH_CONCURRENCY),
        }
        dispatcher = DispatcherFunction(
            self,
            "Dispatcher",
            code_dir=DISPATCHER_CODE_DIR,
            description=f"COAFI task dispatcher of {self.core.config.stack_name}: runs queued tasks",
            layer=self.core.layer,
            table=self.core.table,
            environment=environment,
            removal_policy=self.core.removal_policy,
        )
        # The queue's visibility timeout (30 s) bounds the function timeout (CoafiFunction: 30 s).
        dispatcher.function.add_event_source(event_sources.SqsEventSource(
            self.core.task_queue, batch_size=BATCH_SIZE, report_batch_item_failures=True,
        ))
        return dispatcher

    def _grant_targets(self) -> None:
        """Invoke the app's action functions (unqualified: the dispatcher calls $LATEST) and start its workflows'
        state machines, named by the stack's prefixes (infra/prefixes.py): one resource each, whatever the number
        of actions and workflows."""
        stack_name = self.core.config.stack_name
        role = self.dispatcher.role
        if self.action_functions:
            self.dispatcher.function.add_to_role_policy(iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[prefixes.action_functions(self, stack_name)],
            ))
            nag.suppress(role, "IAM5", "InvokeFunction " + prefixes.reason(
                "action function", naming.action_function_prefix(stack_name)),
                [prefixes.action_functions_finding(stack_name)], children=True)
        if self.state_machines:
            self.dispatcher.function.add_to_role_policy(iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[prefixes.state_machines(self, stack_name)],
            ))
            nag.suppress(role, "IAM5", "StartExecution " + prefixes.reason(
                "state machine", naming.state_machine_prefix(stack_name)),
                [prefixes.state_machines_finding(stack_name)], children=True)

    # -- Scheduler ----------------------------------------------------------------------------------------
    def _build_scheduler_role(self) -> iam.Role:
        # Scheduler's aws:SourceArn is the schedule group's ARN (as CDK's own scheduler targets use it).
        role = iam.Role(
            self,
            "SchedulerRole",
            description="EventBridge Scheduler puts COAFI's delayed and cron tasks on the task queue",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": Stack.of(self).account,
                                 "aws:SourceArn": self.core.schedule_group.schedule_group_arn},
            }),
        )
        role.add_to_policy(iam.PolicyStatement(
            actions=["sqs:SendMessage"],
            resources=[self.core.task_queue.queue_arn, self.core.dead_letter_queue.queue_arn],
        ))
        return role

    # -- outputs ------------------------------------------------------------------------------------------
    def _build_outputs(self) -> None:
        outputs = {
            OUTPUT_SCHEDULER_ROLE: (self.scheduler_role.role_arn, "Role Scheduler uses for delayed and cron tasks"),
            OUTPUT_QUEUE_ARN: (self.core.task_queue.queue_arn, "Task queue ARN (target of task schedules)"),
            OUTPUT_DEAD_LETTER_ARN: (self.core.dead_letter_queue.queue_arn, "Dead-letter queue ARN"),
            OUTPUT_DISPATCHER: (self.dispatcher.function.function_name, "Task dispatcher function"),
        }
        for key, (value, description) in outputs.items():
            output = CfnOutput(self, key, value=value, description=description)
            output.override_logical_id(key)
