"""One workflow definition deployed: its state machine, its permissions, its log group and its triggers."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack, TimeZone
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from coafi import naming
from infra import nag
from infra.constructs.actions import Actions
from infra.constructs.core import Core
from infra.constructs.function import LOG_RETENTION
from infra.discovery import Workflow

MAX_STATE_MACHINE_NAME = naming.MAX_STATE_MACHINE_NAME
DEFAULT_LOG_LEVEL = "ERROR"
#: The managed rule Step Functions uses to follow ``startExecution.sync`` children.
SYNC_RULE = "StepFunctionsGetEventsForStepFunctionsExecutionRule"
TRIGGER_RETRY_ATTEMPTS = 4
TRIGGER_MAX_EVENT_AGE = Duration.hours(2)
SCHEDULE_INPUT = {"trigger": "schedule"}


def state_machine_name(stack_name: str, workflow_id: str) -> str:
    name = naming.state_machine_name(stack_name, workflow_id)
    if len(name) > MAX_STATE_MACHINE_NAME:
        raise ValueError(
            f"state machine name '{name}' is longer than {MAX_STATE_MACHINE_NAME} characters; "
            "shorten the workflow id or the stack name (context coafi:stackName)"
        )
    return name


class WorkflowConstruct(Construct):
    """``<stackName>-<workflowId>``: a STANDARD state machine running the compiled ASL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        workflow: Workflow,
        core: Core,
        actions: Actions,
        children: Mapping[str, sfn.StateMachine],
        event_rule_builder: Callable[[WorkflowConstruct, int, Any], events.Rule] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.event_rule_builder = event_rule_builder  # engine API: triggers go through its function
        self.workflow = workflow
        self.core = core
        self.actions = actions
        self.children = children
        self.name = state_machine_name(core.config.stack_name, workflow.id)
        self.log_group = self._build_log_group()
        self.state_machine = self._build_state_machine()
        self._grant_functions()
        self._grant_external_functions()
        self._grant_subworkflows()
        self._build_triggers()
        self._suppress_findings()

    # -- state machine ----------------------------------------------------------------------------
    def _build_log_group(self) -> logs.LogGroup:
        # /aws/vendedlogs/ keeps Step Functions' log delivery under the resource-policy size limit.
        # Encrypted at rest by CloudWatch Logs (service-managed keys).
        return logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{self.name}",
            retention=LOG_RETENTION,
            removal_policy=self.core.removal_policy,
        )

    def _log_level(self) -> sfn.LogLevel:
        level = str(getattr(self.workflow.definition, "logLevel", None) or DEFAULT_LOG_LEVEL).upper()
        try:
            return sfn.LogLevel[level]
        except KeyError:
            raise ValueError(f"{self.workflow.file}: logLevel {level!r} is not ALL, ERROR, FATAL or OFF") from None

    def _substitutions(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for placeholder, ref in self.workflow.compiled.substitutions.items():
            if ref.kind == "state-function":
                values[placeholder] = self.core.state_function.function.function_arn
            elif ref.kind == "action":
                values[placeholder] = self._action(ref.name).function_arn
            elif ref.kind == "workflow":
                values[placeholder] = self._child(ref.name).state_machine_arn
            elif ref.kind == "rules-function":
                values[placeholder] = self.core.rules_function.function.function_arn
            else:
                raise ValueError(f"{self.workflow.file}: placeholder ${{{placeholder}}} has unknown kind {ref.kind!r}")
        return values

    def _build_state_machine(self) -> sfn.StateMachine:
        definition = self.workflow.definition
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment=f"{definition.name} {definition.version} ({self.workflow.file.name})"[:256],
            definition_body=sfn.DefinitionBody.from_string(json.dumps(self.workflow.compiled.asl)),
            definition_substitutions=self._substitutions(),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=self._log_level(), include_execution_data=False
            ),
        )

    # -- permissions ------------------------------------------------------------------------------
    def _action(self, name: str) -> lambda_.IFunction:
        try:
            return self.actions.function(name)
        except KeyError as exc:
            raise ValueError(f"{self.workflow.file}: {exc.args[0]}") from None

    def _child(self, workflow_id: str) -> sfn.StateMachine:
        if workflow_id not in self.children:
            raise ValueError(
                f"{self.workflow.file}: sub-workflow '{workflow_id}' is not built yet (workflows are built "
                "children first; is its definition file missing?)"
            )
        return self.children[workflow_id]

    def invoked_functions(self) -> list[lambda_.IFunction]:
        """The COAFI functions the machine invokes (state function first), each once."""
        functions: list[lambda_.IFunction] = [self.core.state_function.function]
        for ref in self.workflow.compiled.substitutions.values():
            if ref.kind == "action":
                function = self._action(ref.name)
                if function not in functions:
                    functions.append(function)
            elif ref.kind == "rules-function" and self.core.rules_function.function not in functions:
                functions.append(self.core.rules_function.function)
        return functions

    def _grant_functions(self) -> None:
        # lambda:InvokeFunction on each function's ARN and ARN:* (versions/aliases), as CDK grants it.
        for function in self.invoked_functions():
            function.grant_invoke(self.state_machine)

    def _grant_external_functions(self) -> None:
        external = sorted(set(self.workflow.compiled.external_functions))
        if external:
            self.state_machine.add_to_role_policy(
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=external)
            )

    def _child_executions_arn(self, workflow_id: str) -> str:
        return Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine_name(self.core.config.stack_name, workflow_id)}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_subworkflows(self) -> None:
        """What ``states:startExecution.sync:2`` needs: start the child, follow and stop its executions, and
        manage the rule Step Functions uses to hear about their end."""
        children = sorted(set(self.workflow.compiled.subworkflows))
        if not children:
            return
        for child in children:
            self._child(child).grant_start_execution(self.state_machine)
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[self._child_executions_arn(child) for child in children],
            )
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    Stack.of(self).format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
                ],
            )
        )

    # -- triggers ---------------------------------------------------------------------------------
    def _build_triggers(self) -> None:
        for index, trigger in enumerate(self.workflow.definition.triggers):
            kind = getattr(trigger, "type", None)
            if kind == "event" and self.event_rule_builder is not None:
                self.event_rule_builder(self, index, trigger)
            elif kind == "event":
                self._build_event_rule(index, trigger)
            elif kind == "schedule":
                self._build_schedule(index, trigger)
            elif kind != "manual":
                raise ValueError(f"{self.workflow.file}: triggers[{index}]: unknown trigger type {kind!r}")

    @staticmethod
    def event_pattern(trigger: Any) -> events.EventPattern:
        source = getattr(trigger, "source", None)
        detail_type = getattr(trigger, "detailType", None)
        detail = getattr(trigger, "detail", None)
        return events.EventPattern(
            source=list(source) if source else None,
            detail_type=list(detail_type) if detail_type else None,
            detail=dict(detail) if detail else None,
        )

    def _build_event_rule(self, index: int, trigger: Any) -> events.Rule:
        # The whole event is the execution input (no InputPath: LocalStack mishandles it); coafi.start
        # takes ``detail`` out of it.
        return events.Rule(
            self,
            f"Trigger{index}",
            event_bus=self.core.event_bus,
            description=f"Starts {self.name} (triggers[{index}] of {self.workflow.file.name})"[:512],
            event_pattern=self.event_pattern(trigger),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    dead_letter_queue=self.core.dead_letter_queue,
                    retry_attempts=TRIGGER_RETRY_ATTEMPTS,
                    max_event_age=TRIGGER_MAX_EVENT_AGE,
                )
            ],
        )

    def _build_schedule(self, index: int, trigger: Any) -> scheduler.Schedule:
        expression = getattr(trigger, "expression", None) or _schedule_expression(trigger)
        timezone = getattr(trigger, "timezone", None) or "UTC"
        return scheduler.Schedule(
            self,
            f"Trigger{index}",
            description=f"Starts {self.name} (triggers[{index}] of {self.workflow.file.name})"[:512],
            schedule=scheduler.ScheduleExpression.expression(expression, TimeZone.of(timezone)),
            schedule_group=self.core.schedule_group,
            time_window=scheduler.TimeWindow.off(),
            target=scheduler_targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object(SCHEDULE_INPUT),
                dead_letter_queue=self.core.dead_letter_queue,
                retry_attempts=TRIGGER_RETRY_ATTEMPTS,
                max_event_age=TRIGGER_MAX_EVENT_AGE,
            ),
        )

    # -- cdk-nag ----------------------------------------------------------------------------------
    def _suppress_findings(self) -> None:
        role = self.state_machine.role
        nag.suppress(
            role,
            "IAM5",
            "Added by CDK for tracing and logging: X-Ray (PutTraceSegments, sampling rules) and CloudWatch Logs "
            "delivery (CreateLogDelivery, PutResourcePolicy, ...) support no resource-level permissions, so "
            "AWS requires Resource '*'.",
            ["Resource::*"],
            children=True,
        )
        nag.suppress(
            role,
            "IAM5",
            "'<function ARN>:*' is CDK's grant_invoke form: versions and aliases of exactly the functions this "
            "workflow invokes (its actions and the state function), no others.",
            [found for f in self.invoked_functions() for found in nag.arn_findings(f, ":*", seen_from=role)],
            children=True,
        )
        children = sorted(set(self.workflow.compiled.subworkflows))
        if children:
            nag.suppress(
                role,
                "IAM5",
                "startExecution.sync:2 must describe/stop the child executions it starts; execution ARNs are "
                "only known at run time, so the grant is '<child state machine>:*' for exactly the "
                "sub-workflows this workflow starts.",
                [
                    "Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
                    f"{state_machine_name(self.core.config.stack_name, child)}:*"
                    for child in children
                ],
                children=True,
            )
        if self._log_level() != sfn.LogLevel.ALL:
            nag.suppress(
                self.state_machine,
                "SF1",
                f"Log level {self._log_level().name} is the workflow definition's choice (logLevel); ALL would "
                "log every state transition of every execution at the definition author's cost.",
            )


def _schedule_expression(trigger: Any) -> str:
    cron = getattr(trigger, "cron", None)
    rate = getattr(trigger, "rate", None)
    if cron:
        text = str(cron).strip()
        return text if text.startswith("cron(") else f"cron({text})"
    if rate:
        text = str(rate).strip()
        return text if text.startswith("rate(") else f"rate({text})"
    raise ValueError("a schedule trigger needs cron or rate")
