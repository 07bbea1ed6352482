"""The resources every workflow shares: state table, event bus, task queue + DLQ, schedule group, shared layer
and the core state function."""

from __future__ import annotations

from aws_cdk import AssetHashType, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.bundling import HASH_FILE, build_shared_layer
from infra.config import CoafiConfig
from infra.constructs.function import ARCHITECTURE, RUNTIME, CoafiFunction

TTL_ATTRIBUTE = "expiresAt"
DLQ_RETENTION = Duration.days(14)
MAX_RECEIVE_COUNT = 5


class Core(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: CoafiConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.removal_policy = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.table = self._build_table()
        self.event_bus = self._build_event_bus()
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.task_queue = self._build_task_queue()
        self.schedule_group = self._build_schedule_group()
        self.layer = self._build_layer()
        self.state_function = self._build_state_function()

    # -- state ------------------------------------------------------------------------------------
    def _build_table(self) -> dynamodb.TableV2:
        """Single table of execution and step records (docs/ARCHITECTURE.md, "DynamoDB state table")."""
        return dynamodb.TableV2(
            self,
            "StateTable",
            partition_key=dynamodb.Attribute(name="PK", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="SK", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=self.config.retain_data,
            removal_policy=self.removal_policy,
        )

    # -- messaging --------------------------------------------------------------------------------
    def _build_event_bus(self) -> events.EventBus:
        return events.EventBus(self, "EventBus", event_bus_name=f"{self.config.stack_name}-bus")

    def _build_dead_letter_queue(self) -> sqs.Queue:
        """Where undeliverable tasks, trigger events and scheduled starts end up."""
        # cdk-nag (SQS3) recognises it as the task queue's DLQ: no suppression needed.
        return sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )

    def _build_task_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "TaskQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )

    def _build_schedule_group(self) -> scheduler.ScheduleGroup:
        return scheduler.ScheduleGroup(
            self,
            "ScheduleGroup",
            schedule_group_name=f"{self.config.stack_name}-schedules",
            removal_policy=RemovalPolicy.DESTROY,
        )

    # -- code -------------------------------------------------------------------------------------
    def _build_layer(self) -> lambda_.LayerVersion:
        """The ``coafi`` package + Powertools + pydantic, built with pip (no Docker), cached by content."""
        build = build_shared_layer(self.config.requirements_file, self.config.build_dir)
        return lambda_.LayerVersion(
            self,
            "SharedLayer",
            description="COAFI shared code: the coafi package, Powertools for AWS Lambda, pydantic",
            code=lambda_.Code.from_asset(
                str(build.path),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=build.asset_hash,
                exclude=[HASH_FILE, "__pycache__", "*.pyc"],
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            removal_policy=RemovalPolicy.DESTROY,
        )

    def function_environment(self, service_name: str, *, event_bus: bool) -> dict[str, str]:
        """The environment of a COAFI function (docs/ARCHITECTURE.md, "Functions' environment"; read by
        ``coafi.config.FunctionSettings``). ``event_bus``: the function may put events on the app's bus."""
        environment = {
            "COAFI_TABLE_NAME": self.table.table_name,
            "COAFI_RETENTION_DAYS": str(self.config.record_retention_days),
            "POWERTOOLS_SERVICE_NAME": service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self.config.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": self.config.function_log_level,
        }
        if event_bus:
            environment["COAFI_EVENT_BUS_NAME"] = self.event_bus.event_bus_name
        return environment

    def _build_state_function(self) -> CoafiFunction:
        """Records workflow start/finish and decision outcomes (functions/state/handler.py)."""
        return CoafiFunction(
            self,
            "StateFunction",
            code_dir=self.config.state_function_dir,
            description=f"COAFI state function of {self.config.stack_name}: records executions and steps",
            layer=self.layer,
            table=self.table,
            environment=self.function_environment("coafi-state", event_bus=False),
            removal_policy=self.removal_policy,
        )

