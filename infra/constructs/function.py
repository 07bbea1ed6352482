"""One COAFI Lambda function: own role (no managed policies), own log group, the shared layer, tracing, and an
environment that fits Lambda's 4 KB (checked when the app is synthesized: ``infra.env_size``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IValidation

from infra import nag
from infra.env_size import MAX_ENVIRONMENT_BYTES, environment_size

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


class _Function(lambda_.Function):
    """A ``lambda_.Function`` that remembers its environment (CDK keeps it private), constructor and
    ``add_environment`` alike, for the size check."""

    def __init__(self, scope: Construct, construct_id: str, *, environment: Mapping[str, str],
                 **kwargs: Any) -> None:
        self.coafi_environment: dict[str, str] = dict(environment)
        super().__init__(scope, construct_id, environment=dict(environment), **kwargs)

    def add_environment(self, key: str, value: str, *,
                        remove_in_edge: bool | None = None) -> lambda_.Function:
        self.coafi_environment[key] = value
        return super().add_environment(key, value, remove_in_edge=remove_in_edge)


@jsii.implements(IValidation)
class _EnvironmentFits:
    """Fails the synth when the function's environment may exceed Lambda's 4 KB once its tokens are resolved."""

    def __init__(self, function: _Function, description: str) -> None:
        self.function = function
        self.description = description

    def validate(self) -> list[str]:
        size = environment_size(Stack.of(self.function), self.function.coafi_environment)
        if size.total <= MAX_ENVIRONMENT_BYTES:
            return []
        largest = ", ".join(f"{key} ({n} bytes)" for key, n in size.largest())
        return [f"the environment of Lambda function '{self.description}' ({self.function.node.path}) may take "
                f"{size.total} bytes once deployed (its variables as JSON, tokens at their longest), over Lambda's "
                f"{MAX_ENVIRONMENT_BYTES}-byte limit; largest: {largest}"]


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
        function_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (code_dir / "handler.py").is_file():
            raise FileNotFoundError(f"{code_dir / 'handler.py'} not found: every function folder needs one")
        self.log_group = self._build_log_group(removal_policy)
        self.role = self._build_role(description)
        built = self._build_function(code_dir, description, layer, environment, function_name)
        self.function: lambda_.Function = built
        self._environment = built.coafi_environment
        self.node.add_validation(_EnvironmentFits(built, description))
        self._grant_state_table(table)
        self._suppress_findings()

    @property
    def environment(self) -> dict[str, str]:
        """The function's environment variables as given (tokens unresolved), ``add_environment`` included."""
        return dict(self._environment)

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
        function_name: str | None = None,
    ) -> _Function:
        return _Function(
            self,
            "Function",
            function_name=function_name,
            description=description[:256],
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            handler=HANDLER,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            layers=[layer],
            environment=environment,
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
