"""Dead letters for asynchronous Lambda invocations, and what ``type: schedule`` steps need
(docs/saga-and-dlq.md).

- **Asynchronous invocations** (EventBridge rules, Scheduler, S3, ``InvocationType=Event``) of every COAFI
  function (the state function, the dispatcher, each action): 2 retries within 6 hours, then the invocation record
  (function ARN, request payload, error) goes to the app's dead-letter queue through an on-failure destination,
  from where ``coafi dlq redrive`` invokes the function again with the same payload. (A destination, not the
  legacy ``DeadLetterConfig``: its record names the function, which a redrive needs.)
- **Schedule steps**: when a workflow has one, the state function (which runs them) gets the task queue, schedule
  group and Scheduler role in its environment, ``sqs:SendMessage`` on the task queue, ``scheduler:CreateSchedule``
  on the ``task-*`` schedules of the app's group and ``iam:PassRole`` on the Scheduler role only.

Output ``DeadLetterQueueUrl`` (read by ``coafi dlq``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from coafi.saga.dlq import OUTPUT_DEAD_LETTER_URL
from coafi.tasks.scheduler import SCHEDULE_PREFIX
from infra import nag
from infra.constructs.core import Core

if TYPE_CHECKING:
    from infra.constructs.tasks import Tasks
    from infra.constructs.workflow import WorkflowConstruct

ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)


class Saga(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, core: Core, tasks: Tasks,
                 functions: Mapping[str, lambda_.Function], workflows: Mapping[str, WorkflowConstruct]) -> None:
        super().__init__(scope, construct_id)
        self.core = core
        self.tasks = tasks
        for label, function in sorted(functions.items()):
            self._dead_letter_async_invocations(label, function)
        if any(s.type == "schedule" for wf in workflows.values() for s in wf.workflow.definition.steps):
            self._let_state_function_schedule()
        output = CfnOutput(self, OUTPUT_DEAD_LETTER_URL, value=core.dead_letter_queue.queue_url,
                           description="Dead-letter queue URL (coafi dlq ls|show|redrive)")
        output.override_logical_id(OUTPUT_DEAD_LETTER_URL)

    def _dead_letter_async_invocations(self, label: str, function: lambda_.Function) -> None:
        # Scoped to the function (as Function.configure_async_invoke does); grants it sqs:SendMessage on the DLQ.
        lambda_.EventInvokeConfig(
            function,
            "AsyncInvokeConfig",
            function=function,
            on_failure=destinations.SqsDestination(self.core.dead_letter_queue),
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
        )

    def _let_state_function_schedule(self) -> None:
        state_function = self.core.state_function
        function = state_function.function
        stack = Stack.of(self)
        group = self.core.schedule_group.schedule_group_name
        environment = {
            "COAFI_TASK_QUEUE_URL": self.core.task_queue.queue_url,
            "COAFI_TASK_QUEUE_ARN": self.core.task_queue.queue_arn,
            "COAFI_DEAD_LETTER_QUEUE_ARN": self.core.dead_letter_queue.queue_arn,
            "COAFI_SCHEDULE_GROUP_NAME": group,
            "COAFI_TASK_SCHEDULER_ROLE_ARN": self.tasks.scheduler_role.role_arn,
        }
        for key, value in environment.items():
            function.add_environment(key, value)
        self.core.task_queue.grant_send_messages(function)
        schedules = stack.format_arn(service="scheduler", resource="schedule",
                                     resource_name=f"{group}/{SCHEDULE_PREFIX}*",
                                     arn_format=ArnFormat.SLASH_RESOURCE_NAME)
        function.add_to_role_policy(iam.PolicyStatement(actions=["scheduler:CreateSchedule"], resources=[schedules]))
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.tasks.scheduler_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        ))
        nag.suppress(
            state_function.role,
            "IAM5",
            "Schedule steps create one schedule per scheduled task, named task-<task id> (unknown at deploy time) in "
            "the app's own schedule group: the grant is CreateSchedule on that group's task-* schedules only.",
            [f"Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/{group}/"
             f"{SCHEDULE_PREFIX}*"],
            children=True,
        )
