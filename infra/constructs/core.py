"""The resources every workflow shares: state table (+ payload bucket), event bus, task queue + DLQ, schedule
group, shared layer and the core state function."""

from __future__ import annotations

from aws_cdk import AssetHashType, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from coafi.state import schema
from coafi.state.codec import OBJECT_ROOT
from coafi.state.store import BACKSTOP_DAYS
from infra import nag
from infra.bundling import HASH_FILE, build_shared_layer
from infra.config import CoafiConfig
from infra.constructs.function import ARCHITECTURE, RUNTIME, CoafiFunction
from infra.constructs.rules import build_rules_function
from infra.constructs.waits import grant_waits

TTL_ATTRIBUTE = schema.TTL_ATTRIBUTE
DLQ_RETENTION = Duration.days(14)
MAX_RECEIVE_COUNT = 5
#: Payload objects outlive every item that points at them: an item expires at most BACKSTOP_DAYS + retention
#: after the object was written, and DynamoDB may take a few days more to delete an expired item.
PAYLOAD_EXPIRY_MARGIN_DAYS = 7
ACCESS_LOG_RETENTION = Duration.days(90)
#: Where the state layer puts payloads (coafi.state.codec.object_prefix) and what functions may touch.
PAYLOAD_OBJECTS = OBJECT_ROOT + "*"


class Core(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: CoafiConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.removal_policy = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.table = self._build_table()
        self.access_log_bucket = self._build_access_log_bucket()
        self.payload_bucket = self._build_payload_bucket()
        self.event_bus = self._build_event_bus()
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.task_queue = self._build_task_queue()
        self.schedule_group = self._build_schedule_group()
        self.layer = self._build_layer()
        self.state_function = self._build_state_function()
        self.rules_function = build_rules_function(self)  # infra/constructs/rules.py

    # -- state ------------------------------------------------------------------------------------
    def _build_table(self) -> dynamodb.TableV2:
        """Single table of execution records, history and checkpoints (docs/ARCHITECTURE.md, "DynamoDB state
        table"); keys and the sparse indexes of find_executions come from ``coafi.state.schema``."""
        string = dynamodb.AttributeType.STRING
        return dynamodb.TableV2(
            self,
            "StateTable",
            partition_key=dynamodb.Attribute(name=schema.PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=schema.SORT_KEY, type=string),
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index.name,
                    partition_key=dynamodb.Attribute(name=index.partition_key, type=string),
                    sort_key=dynamodb.Attribute(name=schema.INDEX_SORT_KEY, type=string),
                    projection_type=dynamodb.ProjectionType.INCLUDE,
                    non_key_attributes=list(schema.PROJECTED_ATTRIBUTES),
                )
                for index in schema.INDEXES
            ],
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=self.config.retain_data,
            removal_policy=self.removal_policy,
        )

    def _build_access_log_bucket(self) -> s3.Bucket:
        """Server access logs of the payload bucket (S3 delivers them with SSE-S3 only)."""
        return s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=ACCESS_LOG_RETENTION)],
            removal_policy=self.removal_policy,
        )

    def _build_payload_bucket(self) -> s3.Bucket:
        """Payloads too large for a state item (coafi.state.codec): one prefix per execution."""
        return s3.Bucket(
            self,
            "PayloadBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="payloads/",
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-payloads",
                expiration=Duration.days(
                    self.config.record_retention_days + BACKSTOP_DAYS + PAYLOAD_EXPIRY_MARGIN_DAYS),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )],
            removal_policy=self.removal_policy,
        )

    def grant_state_access(self, function: CoafiFunction) -> None:
        """What a function recording state needs besides the table (granted by CoafiFunction): payload objects
        written and read back. Not delete or list: only ``StateStore.delete_state`` needs those."""
        function.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[self.payload_bucket.arn_for_objects(PAYLOAD_OBJECTS)],
        ))
        nag.suppress(
            function.role,
            "IAM5",
            "Payload objects are keyed by execution (executions/<execution id>/...), unknown at deploy time; "
            "the grant is limited to that prefix of the stack's own payload bucket, get and put only. The "
            "table's indexes (find_executions) are likewise only known as <table>/index/*.",
            [nag.arn_finding(self.payload_bucket, "/" + PAYLOAD_OBJECTS), nag.arn_finding(self.table, "/index/*")],
            children=True,
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
            "COAFI_PAYLOAD_BUCKET": self.payload_bucket.bucket_name,
            "COAFI_RETENTION_DAYS": str(self.config.record_retention_days),
            "POWERTOOLS_SERVICE_NAME": service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self.config.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": self.config.function_log_level,
            # no pydantic plugins in the functions: ~20 ms less cold start (coafi/_plugin_discovery.py)
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
        }
        if event_bus:
            environment["COAFI_EVENT_BUS_NAME"] = self.event_bus.event_bus_name
        return environment

    def _build_state_function(self) -> CoafiFunction:
        """Records workflow start/finish and decision outcomes (functions/state/handler.py)."""
        function = CoafiFunction(
            self,
            "StateFunction",
            code_dir=self.config.state_function_dir,
            description=f"COAFI state function of {self.config.stack_name}: records executions and steps",
            layer=self.layer,
            table=self.table,
            environment=self.function_environment("coafi-state", event_bus=False),
            removal_policy=self.removal_policy,
        )
        self.grant_state_access(function)
        grant_waits(self, function)  # callback and signal steps (infra/constructs/waits.py)
        return function

