"""The COAFI stack: composes the shared core, one function per action and one state machine per workflow."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import CoafiConfig
from infra.constructs import Actions, Core, WorkflowConstruct
from infra.constructs.engine import Engine
from infra.constructs.escalation import Escalations
from infra.constructs.function import CoafiFunction
from infra.constructs.observability import STATE_FUNCTION_LABEL, MonitoredWorkflow, Observability
from infra.constructs.rules import RuleFiles, rules_functions
from infra.constructs.saga import Saga
from infra.constructs.tasks import Tasks
from infra.discovery import discover_actions, load_workflows
from infra.iam_size import RolePoliciesFit
from infra.workflow_stacks import WorkflowStack


class CoafiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: CoafiConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        action_folders = discover_actions(config.actions_dir)
        self.core = Core(self, "Core", config=config)
        self.actions = Actions(self, "Actions", core=self.core, folders=action_folders)
        self.engine = Engine(self, "Engine", core=self.core)
        self.workflows = self._build_workflows(set(action_folders))
        self.engine.attach(self.workflows)
        self.tasks = Tasks(self, "Tasks", core=self.core, actions=self.actions, workflows=self.workflows)
        self.rules = RuleFiles(self, "Rules", core=self.core, definitions_dir=config.definitions_dir,
                               workflows=[(wf.workflow.file, wf.workflow.definition) for wf in self.workflows.values()])
        self.saga = Saga(self, "Saga", core=self.core, tasks=self.tasks, workflows=self.workflows,
                         functions=self._functions_to_dead_letter())
        self.observability = self._build_observability()
        self.escalations = Escalations(self, "Escalations", core=self.core)  # error policies' Escalation events
        self._build_outputs()
        self.node.add_validation(RolePoliciesFit(self))  # IAM's policy size limits (infra/iam_size.py)

    def _functions_to_dead_letter(self) -> dict[str, lambda_.Function]:
        """Every function of the app whose failed asynchronous invocations have no destination yet (by path)."""
        return {
            construct.node.path: construct.function
            for construct in self.node.find_all()
            if isinstance(construct, CoafiFunction)
            and construct.function.node.try_find_child("EventInvokeConfig") is None
        }

    def _build_workflows(self, actions: set[str]) -> dict[str, WorkflowConstruct]:
        """One construct scope per workflow, children before the workflows that start them."""
        scope = Construct(self, "Workflows")
        built: dict[str, WorkflowConstruct] = {}
        machines: dict[str, sfn.StateMachine] = {}
        for workflow in load_workflows(self.config.definitions_dir, actions):
            nested = WorkflowStack(scope, workflow, stack_name=self.config.stack_name)  # infra/workflow_stacks.py
            construct = WorkflowConstruct(
                nested, workflow.id, workflow=workflow, core=self.core, actions=self.actions, children=machines,
                event_rule_builder=self.engine.build_trigger_rule,
            )
            built[workflow.id] = construct
            machines[workflow.id] = construct.state_machine
        return built

    def _build_observability(self) -> Observability:
        """Alarm topic, dashboard and alarms; thresholds from each definition's ``alarms:`` block."""
        if STATE_FUNCTION_LABEL in self.actions.functions:
            raise ValueError(f"functions/actions/{STATE_FUNCTION_LABEL}: that name is reserved for the state function")
        functions = {STATE_FUNCTION_LABEL: self.core.state_function.function}
        functions.update({name: f.function for name, f in self.actions.functions.items()})
        functions.update(rules_functions(self.core, self.rules, self.actions.functions))  # error/throttle alarms
        monitored = [
            MonitoredWorkflow(
                workflow_id=wf_id,
                state_machine=wf.state_machine,
                functions=(STATE_FUNCTION_LABEL, *wf.workflow.compiled.actions),
                alarms=wf.workflow.definition.alarm_settings,
                source=wf.workflow.file.name,
            )
            for wf_id, wf in self.workflows.items()
        ]
        return Observability(
            self, "Observability", name_prefix=self.config.stack_name, workflows=monitored, functions=functions,
            dead_letter_queue=self.core.dead_letter_queue, removal_policy=self.core.removal_policy,
        )

    def _build_outputs(self) -> None:
        core = self.core
        CfnOutput(self, "StateTableName", value=core.table.table_name, description="COAFI state table")
        CfnOutput(self, "EventBusName", value=core.event_bus.event_bus_name, description="The app's event bus")
        CfnOutput(self, "TaskQueueUrl", value=core.task_queue.queue_url, description="Task queue")
        CfnOutput(
            self, "ScheduleGroupName", value=core.schedule_group.schedule_group_name,
            description="EventBridge Scheduler group of the workflows' schedules",
        )
        CfnOutput(
            self, "StateFunctionArn", value=core.state_function.function.function_arn,
            description="Core state function",
        )
        arns = {wf_id: wf.state_machine.state_machine_arn for wf_id, wf in sorted(self.workflows.items())}
        CfnOutput(
            self, "WorkflowArns", value=self.to_json_string(arns) if arns else "{}",
            description="JSON object: workflow id -> state machine ARN",
        )
        CfnOutput(self, "SnsTopicArn", value=self.observability.topic.topic_arn,
                  description="Alarm notifications: subscribe to be told about failures")
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name,
                  description="CloudWatch dashboard of the workflows")
