"""One COAFI Lambda function: own role (no managed policies), own log group, the shared layer, tracing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import nag

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
HANDLER = "handler.handler"
MEMORY_MB = 256
TIMEOUT = Duration.seconds(30)
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
#: Never shipped: bytecode of the developer's interpreter, caches, tests.
CODE_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "tests"]


def partition_statement(table: dynamodb.ITableV2, actions: list[str], leading_keys: list[str], *,
                        operator: str = "ForAllValues:StringLike") -> iam.PolicyStatement:
    """``actions`` on the state table's items whose partition key matches ``leading_keys`` (no index): for the
    functions that own one part of the single table (task partitions, the workflow registry, the rules)."""
    return iam.PolicyStatement(
        actions=actions,
        resources=[table.table_arn],
        conditions={operator: {"dynamodb:LeadingKeys": leading_keys}},
    )


class CoafiFunction(Construct):
    """A handler folder deployed as a function that may read and write the state table."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code_dir: Path,
        description: str,
        layer: lambda_.ILayerVersion,
        table: dynamodb.ITableV2,
        environment: Mapping[str, str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (code_dir / "handler.py").is_file():
            raise FileNotFoundError(f"{code_dir / 'handler.py'} not found: every function folder needs one")
        self.log_group = self._build_log_group(removal_policy)
        self.role = self._build_role(description)
        self.function = self._build_function(code_dir, description, layer, environment)
        self._grant_state_table(table)
        self._suppress_findings()

    def _build_log_group(self, removal_policy: RemovalPolicy) -> logs.LogGroup:
        # Encrypted at rest by CloudWatch Logs (service-managed keys); kept one month.
        return logs.LogGroup(self, "Logs", retention=LOG_RETENTION, removal_policy=removal_policy)

    def _build_role(self, description: str) -> iam.Role:
        # An own role instead of AWSLambdaBasicExecutionRole: logs may only go to this function's group.
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {description}"[:1000],
        )
        self.log_group.grant_write(role)
        return role

    def _build_function(
        self,
        code_dir: Path,
        description: str,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
    ) -> lambda_.Function:
        return lambda_.Function(
            self,
            "Function",
            description=description[:256],
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            handler=HANDLER,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            layers=[layer],
            environment=dict(environment),
            role=self.role,
            log_group=self.log_group,
        )

    def _grant_state_table(self, table: dynamodb.ITableV2) -> None:
        table.grant_read_write_data(self.function)

    def _suppress_findings(self) -> None:
        nag.suppress(
            self.function,
            "L1",
            "Python 3.12 on purpose: the shared layer's wheels are built for CPython 3.12 and the local "
            "Lambda executor runs handlers with a 3.12 interpreter; move runtime and layer together.",
        )
        nag.suppress(self.role, "IAM5", nag.XRAY_REASON, ["Resource::*"], children=True)
