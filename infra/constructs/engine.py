"""The engine API in the stack (docs/engine-api.md).

- **API function** (``functions/api``): handles the EventBridge commands on the app's bus (one rule matching the
  detail-types of ``coafi.engine.commands.COMMANDS``) and the event triggers of the workflow definitions (each
  trigger rule targets it with ``{"coafiTrigger": {"workflowId"}, "event": <aws.events.event.json>}``, so it
  starts the workflow keyed by the event id: a duplicate delivery starts nothing). It may start the workflows'
  state machines and their published versions, describe and stop their executions, read and write the state
  table (records, the registry, idempotency keys) and put its answer events on the bus. Failed asynchronous
  invocations go to the dead-letter queue after Lambda's two retries.
- **Registrar function** (``functions/registrar``) behind the ``WorkflowRegistry`` custom resource: on every
  deploy it publishes a version of each state machine and registers it as the workflow's live version, and it
  registers the definitions' error policies (the resource's ``ErrorPolicies`` property, computed here by
  ``coafi.resilience.registry.policy_set``). Its table access is limited to the registry and error policy
  partitions (``dynamodb:LeadingKeys``).

Outputs: ``ApiFunctionName``, ``RegistrarFunctionName`` (``coafi deploy --local`` invokes the registrar when the
local cloud skipped the custom resource: LocalStack's community edition without COAFI's plugin runs none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk import ArnFormat, CfnOutput, CustomResource, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from coafi import naming
from coafi.engine.commands import COMMANDS
from coafi.engine.registrar import RESOURCE_TYPE as REGISTRY_RESOURCE_TYPE
from coafi.engine.registry import REGISTRY_LEADING_KEYS
from coafi.resilience.registry import PARTITION as POLICY_PARTITION
from coafi.resilience.registry import policy_set
from infra import nag, prefixes
from infra.constructs.core import Core
from infra.constructs.function import CoafiFunction, partition_statement
from infra.constructs.waits import grant_waits

if TYPE_CHECKING:
    from infra.constructs.workflow import WorkflowConstruct

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
API_CODE_DIR = FUNCTIONS_DIR / "api"
REGISTRAR_CODE_DIR = FUNCTIONS_DIR / "registrar"
OUTPUT_API_FUNCTION = "ApiFunctionName"
OUTPUT_REGISTRAR_FUNCTION = "RegistrarFunctionName"
ASYNC_RETRIES = 2
RULE_RETRY_ATTEMPTS = 4
RULE_MAX_EVENT_AGE = Duration.hours(2)
#: What the registrar does with registry items (transactions need the per-item actions).
REGISTRAR_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query",
                           "dynamodb:ConditionCheckItem"]


class RegistrarFunction(CoafiFunction):
    """A CoafiFunction whose state table access is limited to the registry and error policy partitions."""

    def _grant_state_table(self, table: dynamodb.ITableV2) -> None:
        self.function.add_to_role_policy(partition_statement(
            table, REGISTRAR_TABLE_ACTIONS, [*REGISTRY_LEADING_KEYS, POLICY_PARTITION],
            operator="ForAllValues:StringEquals"))


def workflow_environment(scope: Construct, stack_name: str, workflow_ids: Iterable[str]) -> dict[str, str]:
    """What a function needs to start the stack's workflows (``coafi.naming.workflow_arns``): their ids and the
    ARN prefix of their fixed-name state machines, not a map of ARNs (Lambda's 4 KB environment)."""
    return {
        naming.WORKFLOW_IDS_ENV: naming.join_names(workflow_ids),
        naming.STATE_MACHINE_ARN_PREFIX_ENV: Stack.of(scope).format_arn(
            service="states", resource="stateMachine", resource_name=naming.state_machine_prefix(stack_name),
            arn_format=ArnFormat.COLON_RESOURCE_NAME),
    }


def trigger_input(workflow_id: str) -> str:
    """The input template of a trigger rule's target: the workflow and the whole event."""
    return '{"coafiTrigger": {"workflowId": ' + json.dumps(workflow_id) + '}, "event": <aws.events.event.json>}'


class Engine(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, core: Core) -> None:
        super().__init__(scope, construct_id)
        self.core = core
        self.api = self._build_api()
        self.command_rule = self._build_command_rule()
        self.registrar: RegistrarFunction | None = None

    # -- API function ---------------------------------------------------------------------------------
    def _build_api(self) -> CoafiFunction:
        api = CoafiFunction(
            self,
            "Api",
            code_dir=API_CODE_DIR,
            description=f"COAFI engine API of {self.core.config.stack_name}: commands and event triggers",
            layer=self.core.layer,
            table=self.core.table,
            environment=self.core.function_environment("coafi-api", event_bus=True),
            removal_policy=self.core.removal_policy,
        )
        self.core.grant_state_access(api)
        grant_waits(self.core, api)  # SignalWorkflow / CompleteTask / FailTask complete task tokens
        api.function.configure_async_invoke(
            retry_attempts=ASYNC_RETRIES, on_failure=destinations.SqsDestination(self.core.dead_letter_queue))
        return api

    def _target(self, event: events.RuleTargetInput | None = None) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.api.function, event=event, dead_letter_queue=self.core.dead_letter_queue,
            retry_attempts=RULE_RETRY_ATTEMPTS, max_event_age=RULE_MAX_EVENT_AGE,
        )

    def _build_command_rule(self) -> events.Rule:
        return events.Rule(
            self,
            "Commands",
            event_bus=self.core.event_bus,
            description=f"Engine commands ({', '.join(sorted(COMMANDS))}) to the COAFI API function"[:512],
            event_pattern=events.EventPattern(detail_type=sorted(COMMANDS)),
            targets=[self._target()],
        )

    def build_trigger_rule(self, workflow: WorkflowConstruct, index: int, trigger: Any) -> events.Rule:
        """An event trigger of ``workflow``: the definition's pattern, delivered to the API function, which
        starts the workflow once per event id (WorkflowConstruct's ``event_rule_builder``)."""
        rule = events.Rule(
            workflow,
            f"Trigger{index}",
            event_bus=self.core.event_bus,
            description=f"Starts {workflow.name} (triggers[{index}] of {workflow.workflow.file.name})"[:512],
            event_pattern=workflow.event_pattern(trigger),
            targets=[self._target(events.RuleTargetInput.from_object({"coafiTrigger": workflow.workflow.id}))],
        )
        # The whole event is the execution input (coafi.start takes ``detail`` out of it); CDK's
        # RuleTargetInput has no form for <aws.events.event.json>, so the target's input is set here.
        cfn = rule.node.default_child
        assert isinstance(cfn, events.CfnRule)
        cfn.add_property_deletion_override("Targets.0.Input")
        cfn.add_property_override("Targets.0.InputTransformer", {"InputTemplate": trigger_input(workflow.workflow.id)})
        return rule

    # -- after the workflows are built -----------------------------------------------------------------
    def attach(self, workflows: Mapping[str, WorkflowConstruct]) -> None:
        """Grant the API function the workflows, and register them on every deploy."""
        for key, value in workflow_environment(self, self.core.config.stack_name, workflows).items():
            self.api.function.add_environment(key, value)
        if workflows:
            # by the stack's prefix, not one ARN per workflow: the same size for 1 or 99 (infra/prefixes.py)
            stack_name = self.core.config.stack_name
            self.api.function.add_to_role_policy(iam.PolicyStatement(
                actions=["states:StartExecution"],  # the machines and their published versions
                resources=[prefixes.state_machines(self, stack_name)],
            ))
            self.api.function.add_to_role_policy(iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[prefixes.executions(self, stack_name)],
            ))
        self.registrar = self._build_registrar(workflows)
        self._suppress_findings(workflows)
        self._build_outputs()

    def _build_registrar(self, workflows: Mapping[str, WorkflowConstruct]) -> RegistrarFunction:
        deployed = {
            wf_id: {
                "stateMachineArn": wf.state_machine.state_machine_arn,
                "version": str(wf.workflow.definition.version),
                "definitionSha256": hashlib.sha256(
                    json.dumps(wf.workflow.compiled.asl, sort_keys=True).encode()).hexdigest(),
            }
            for wf_id, wf in sorted(workflows.items())
        }
        properties = {"Source": f"stack:{self.core.config.stack_name}", "Workflows": deployed}
        policies = policy_set([wf.workflow.definition for _, wf in sorted(workflows.items())],
                              self.core.config.definitions_dir)
        registrar = RegistrarFunction(
            self,
            "Registrar",
            code_dir=REGISTRAR_CODE_DIR,
            description=f"COAFI workflow registrar of {self.core.config.stack_name}: registers deployed versions",
            layer=self.core.layer,
            table=self.core.table,
            # what to register comes with each request (the resource's properties): nothing per workflow here
            environment=self.core.function_environment("coafi-registrar", event_bus=False),
            removal_policy=self.core.removal_policy,
        )
        if workflows:
            registrar.function.add_to_role_policy(iam.PolicyStatement(
                actions=["states:PublishStateMachineVersion"],
                resources=[prefixes.state_machines(self, self.core.config.stack_name)],
            ))
        CustomResource(
            self,
            "WorkflowRegistry",
            service_token=registrar.function.function_arn,
            resource_type=REGISTRY_RESOURCE_TYPE,
            # ``coafi deploy --local``'s Sync reads them from the deployed template (coafi.engine.registrar)
            properties={**properties, "ErrorPolicies": policies.to_json()},
        )
        return registrar

    def _suppress_findings(self, workflows: Mapping[str, WorkflowConstruct]) -> None:
        if not workflows:
            return
        stack_name = self.core.config.stack_name
        machines = naming.state_machine_prefix(stack_name)
        nag.suppress(
            self.api.role,
            "IAM5",
            "StartExecution " + prefixes.reason("state machine (and its published versions, started by version ARN)",
                                                machines)
            + " DescribeExecution/StopExecution likewise name their executions ('execution:" + machines + "*:*', "
            "execution names are only known at run time).",
            [prefixes.state_machines_finding(stack_name), prefixes.executions_finding(stack_name)],
            children=True,
        )
        assert self.registrar is not None
        nag.suppress(
            self.registrar.role,
            "IAM5",
            "PublishStateMachineVersion " + prefixes.reason("state machine", machines),
            [prefixes.state_machines_finding(stack_name)],
            children=True,
        )

    def _build_outputs(self) -> None:
        assert self.registrar is not None
        outputs = {
            OUTPUT_API_FUNCTION: (self.api.function.function_name, "Engine API function (commands, triggers)"),
            OUTPUT_REGISTRAR_FUNCTION: (self.registrar.function.function_name, "Workflow registrar function"),
        }
        for key, (value, description) in outputs.items():
            output = CfnOutput(self, key, value=value, description=description)
            output.override_logical_id(key)
