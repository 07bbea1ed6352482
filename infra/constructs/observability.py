"""Operations view of the app: an encrypted SNS alarm topic, a CloudWatch dashboard with one row per workflow,
and the alarms that notify the topic.

Alarms (all ``Sum`` over the workflow's period unless said otherwise, missing data is not breaching):

| alarm | metric | threshold (``alarms:`` of the definition) |
|---|---|---|
| ``<prefix>-<workflow>-executions-failed`` | ``AWS/States ExecutionsFailed`` | ``failedExecutions`` |
| ``<prefix>-<workflow>-executions-timed-out`` | ``AWS/States ExecutionsTimedOut`` | ``timedOutExecutions`` |
| ``<prefix>-<workflow>-executions-throttled`` | ``AWS/States ExecutionThrottled`` | ``throttledExecutions`` |
| ``<prefix>-fn-<function>-errors`` | ``AWS/Lambda Errors`` | ``functionErrors`` (strictest of its workflows) |
| ``<prefix>-fn-<function>-throttles`` | ``AWS/Lambda Throttles`` | ``functionThrottles`` (strictest of its workflows) |
| ``<prefix>-dlq-not-empty`` | ``AWS/SQS ApproximateNumberOfMessagesVisible`` (Maximum, 5 min) | > 0 |

The topic is encrypted with a customer managed KMS key: CloudWatch alarms cannot publish to a topic encrypted
with the AWS managed ``alias/aws/sns`` key, whose key policy cannot grant ``cloudwatch.amazonaws.com``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from coafi.definitions.models import AlarmSettings

CLOUDWATCH = "cloudwatch.amazonaws.com"
#: Key administration without key use: the account (through IAM) manages the key; CloudWatch uses it.
KEY_ADMIN_ACTIONS = [
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
    "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
]
#: What a publisher to an encrypted topic needs on its key.
KEY_PUBLISH_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
GRAPH_PERIOD = Duration.minutes(5)
#: SQS publishes queue metrics every five minutes.
DLQ_PERIOD = Duration.minutes(5)
GRAPH_WIDTH = 6
GRAPH_HEIGHT = 6
#: CloudWatch limits: widgets per dashboard, alarms per alarm status widget.
MAX_WIDGETS = 500
MAX_STATUS_ALARMS = 100
DURATION_PERCENTILES = ("p50", "p90", "p99")
STATE_FUNCTION_LABEL = "coafi-state"


@dataclass(frozen=True)
class MonitoredWorkflow:
    """What the construct needs to know about one deployed workflow."""

    workflow_id: str
    state_machine: sfn.IStateMachine
    #: Labels (keys of ``Observability``'s ``functions``) of the app's functions the workflow invokes.
    functions: tuple[str, ...]
    alarms: AlarmSettings
    #: Where the thresholds come from (the definition file), for alarm descriptions.
    source: str = ""


@dataclass(frozen=True)
class _FunctionAlarmPlan:
    threshold: int
    settings: AlarmSettings
    workflow_id: str | None  # whose settings; None: the defaults (a function no workflow invokes)


class Observability(Construct):
    """The alarm topic, the dashboard and the alarms of one COAFI app.

    ``functions``: every function of the app by label (action name, ``coafi-state`` for the state function).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        workflows: Sequence[MonitoredWorkflow],
        functions: Mapping[str, lambda_.IFunction],
        dead_letter_queue: sqs.IQueue,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix
        self.workflows = list(workflows)
        self.functions = dict(functions)
        self.dead_letter_queue = dead_letter_queue
        self._check_inputs()
        self.key = self._build_key(removal_policy)
        self.topic = self._build_topic()
        #: By name without the prefix (the alarm's construct id under ``Alarms``).
        self.alarms: dict[str, cw.Alarm] = {}
        self._alarm_scope = Construct(self, "Alarms")
        self._build_workflow_alarms()
        self._build_function_alarms()
        self._build_dlq_alarm()
        self.dashboard = self._build_dashboard()

    def _check_inputs(self) -> None:
        ids = [w.workflow_id for w in self.workflows]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"workflows monitored twice: {', '.join(duplicates)}")
        for workflow in self.workflows:
            unknown = sorted(set(workflow.functions) - set(self.functions))
            if unknown:
                raise ValueError(
                    f"workflow '{workflow.workflow_id}' invokes functions the app does not have: {', '.join(unknown)}"
                )
        widgets = 1 + len(self.workflows) * 5
        if widgets > MAX_WIDGETS:
            raise ValueError(
                f"{len(self.workflows)} workflows need {widgets} dashboard widgets; CloudWatch allows "
                f"{MAX_WIDGETS} per dashboard: split the app into several stacks"
            )

    # -- topic ------------------------------------------------------------------------------------
    def _build_key(self, removal_policy: RemovalPolicy) -> kms.Key:
        policy = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="AccountAdministersTheKey",
                    principals=[iam.AccountRootPrincipal()],
                    actions=KEY_ADMIN_ACTIONS,
                    resources=["*"],  # in a key policy "*" is this key
                ),
                iam.PolicyStatement(
                    sid="AccountPrincipalsMayPublishThroughIAM",
                    principals=[iam.AccountRootPrincipal()],
                    actions=KEY_PUBLISH_ACTIONS,
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="CloudWatchAlarmsPublish",
                    principals=[iam.ServicePrincipal(CLOUDWATCH)],
                    actions=KEY_PUBLISH_ACTIONS,
                    resources=["*"],
                ),
            ]
        )
        return kms.Key(
            self,
            "AlarmTopicKey",
            description=f"Encrypts the {self.name_prefix} alarm topic (CloudWatch alarms publish to it)",
            enable_key_rotation=True,
            policy=policy,
            removal_policy=removal_policy,
            pending_window=Duration.days(7),
        )

    def _alarm_arn_pattern(self) -> str:
        return Stack.of(self).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{self.name_prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _build_topic(self) -> sns.Topic:
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{self.name_prefix} alarms"[:100],
            master_key=self.key,
            enforce_ssl=True,
        )
        # A topic policy replaces the default one: CloudWatch must be allowed explicitly, and only for this
        # app's alarms in this account.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisApp",
                principals=[iam.ServicePrincipal(CLOUDWATCH)],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                    "ArnLike": {"aws:SourceArn": self._alarm_arn_pattern()},
                },
            )
        )
        return topic

    # -- alarms -----------------------------------------------------------------------------------
    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        settings: AlarmSettings,
        description: str,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self._alarm_scope,
            name,
            alarm_name=f"{self.name_prefix}-{name}",
            alarm_description=description[:1024],
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=settings.evaluationPeriods,
            datapoints_to_alarm=settings.datapoints,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[name] = alarm
        return alarm

    def _build_workflow_alarms(self) -> None:
        for workflow in self.workflows:
            settings = workflow.alarms
            if not settings.enabled:
                continue
            machine = workflow.state_machine
            period = Duration.minutes(settings.periodMinutes)
            source = f" (alarms.{{field}} of {workflow.source})" if workflow.source else " (alarms.{field})"
            checks = (
                ("executions-failed", "failedExecutions", "failed", machine.metric_failed(period=period)),
                ("executions-timed-out", "timedOutExecutions", "timed out", machine.metric_timed_out(period=period)),
                ("executions-throttled", "throttledExecutions", "throttled",
                 machine.metric_throttled(period=period)),
            )
            for suffix, field, what, metric in checks:
                threshold = getattr(settings, field)
                if threshold is None:
                    continue
                self._alarm(
                    f"{workflow.workflow_id}-{suffix}",
                    metric,
                    threshold=threshold,
                    settings=settings,
                    description=(
                        f"Workflow {workflow.workflow_id}: {threshold} or more executions {what} in "
                        f"{settings.datapoints} of {settings.evaluationPeriods} period(s) of "
                        f"{settings.periodMinutes} min." + source.format(field=field)
                    ),
                )

    def function_alarm_plans(self, field: str) -> dict[str, _FunctionAlarmPlan]:
        """For each function: the strictest ``field`` threshold of the workflows that invoke it (lowest
        threshold, then fewest datapoints, then shortest window). A function no workflow invokes gets the
        defaults; one whose workflows all turned this alarm off gets none."""
        plans: dict[str, _FunctionAlarmPlan] = {}
        invoked: set[str] = set()
        for workflow in self.workflows:
            invoked.update(workflow.functions)
            settings = workflow.alarms
            threshold = getattr(settings, field)
            if not settings.enabled or threshold is None:
                continue
            for label in workflow.functions:
                candidate = _FunctionAlarmPlan(threshold, settings, workflow.workflow_id)
                current = plans.get(label)
                if current is None or _strictness(candidate) < _strictness(current):
                    plans[label] = candidate
        defaults = AlarmSettings()
        default_threshold = getattr(defaults, field)
        for label in self.functions:
            if label not in invoked and default_threshold is not None:
                plans[label] = _FunctionAlarmPlan(default_threshold, defaults, None)
        return plans

    def _build_function_alarms(self) -> None:
        checks = (("errors", "functionErrors", "errors"), ("throttles", "functionThrottles", "throttled invocations"))
        for suffix, field, what in checks:
            plans = self.function_alarm_plans(field)
            for label in sorted(plans):
                plan = plans[label]
                function = self.functions[label]
                settings = plan.settings
                period = Duration.minutes(settings.periodMinutes)
                metric = function.metric_errors(period=period) if suffix == "errors" else \
                    function.metric_throttles(period=period)
                origin = f"alarms.{field} of workflow {plan.workflow_id}, the strictest of the workflows " \
                    "invoking it" if plan.workflow_id else "default: no workflow invokes it"
                self._alarm(
                    f"fn-{label}-{suffix}",
                    metric,
                    threshold=plan.threshold,
                    settings=settings,
                    description=(
                        f"Function {label}: {plan.threshold} or more {what} in {settings.datapoints} of "
                        f"{settings.evaluationPeriods} period(s) of {settings.periodMinutes} min ({origin})."
                    ),
                )

    def _dlq_depth(self, label: str | None = None) -> cw.Metric:
        return self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=DLQ_PERIOD, statistic=cw.Stats.MAXIMUM, label=label
        )

    def _build_dlq_alarm(self) -> None:
        self._alarm(
            "dlq-not-empty",
            self._dlq_depth(),
            threshold=0,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            settings=AlarmSettings(periodMinutes=5, evaluationPeriods=1),
            description=(
                "The dead-letter queue holds messages: undeliverable tasks, trigger events or scheduled starts. "
                "Inspect them, fix the cause, then redrive or delete them."
            ),
        )

    # -- dashboard --------------------------------------------------------------------------------
    def _workflow_row(self, workflow: MonitoredWorkflow) -> list[cw.IWidget]:
        machine = workflow.state_machine
        executions = cw.GraphWidget(
            title=f"{workflow.workflow_id}: executions",
            left=[
                machine.metric_started(period=GRAPH_PERIOD, label="Started"),
                machine.metric_succeeded(period=GRAPH_PERIOD, label="Succeeded"),
                machine.metric_failed(period=GRAPH_PERIOD, label="Failed"),
            ],
            left_y_axis=cw.YAxisProps(min=0, show_units=False),
            width=GRAPH_WIDTH,
            height=GRAPH_HEIGHT,
        )
        duration = cw.GraphWidget(
            title=f"{workflow.workflow_id}: duration (ms)",
            left=[machine.metric_time(period=GRAPH_PERIOD, statistic=p, label=p) for p in DURATION_PERCENTILES],
            left_y_axis=cw.YAxisProps(min=0, show_units=False),
            width=GRAPH_WIDTH,
            height=GRAPH_HEIGHT,
        )
        errors = cw.GraphWidget(
            title=f"{workflow.workflow_id}: step (Lambda) errors",
            left=[
                self.functions[label].metric_errors(period=GRAPH_PERIOD, label=label)
                for label in workflow.functions
            ],
            left_y_axis=cw.YAxisProps(min=0, show_units=False),
            width=GRAPH_WIDTH,
            height=GRAPH_HEIGHT,
        )
        dlq = cw.GraphWidget(
            title="Dead-letter queue depth",
            left=[self._dlq_depth("Messages visible")],
            left_y_axis=cw.YAxisProps(min=0, show_units=False),
            width=GRAPH_WIDTH,
            height=GRAPH_HEIGHT,
        )
        header = cw.TextWidget(markdown=f"### Workflow `{workflow.workflow_id}`", width=24, height=1)
        return [header, executions, duration, errors, dlq]

    def _build_dashboard(self) -> cw.Dashboard:
        dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self.name_prefix}-workflows",
            default_interval=Duration.hours(3),
        )
        alarms = [self.alarms[k] for k in sorted(self.alarms)][:MAX_STATUS_ALARMS]
        dashboard.add_widgets(
            cw.AlarmStatusWidget(
                title=f"{self.name_prefix} alarms", alarms=alarms, width=24, height=3,
                sort_by=cw.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
            )
        )
        for workflow in sorted(self.workflows, key=lambda w: w.workflow_id):
            header, *graphs = self._workflow_row(workflow)
            dashboard.add_widgets(header)
            dashboard.add_widgets(*graphs)
        return dashboard


def _strictness(plan: _FunctionAlarmPlan) -> tuple[int, int, int, int]:
    s = plan.settings
    return (plan.threshold, s.datapoints, s.evaluationPeriods * s.periodMinutes, s.periodMinutes)
