"""Run compiled workflows in process, on moto, with the project's real Lambda handlers.

moto executes state machines with a real ASL interpreter; its Lambda backend is pointed at the handlers in
``functions/`` so every step runs the project's code, writing to moto's DynamoDB. Seconds per test, no
LocalStack. It does not deploy through CloudFormation, enforce IAM or deliver EventBridge targets: the
LocalStack tier covers those.

    with InProcessCloud(project_root) as cloud:
        result = cloud.run("content-generation", {"contentType": "article", ...})
        assert result.status == "SUCCEEDED"
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from coafi.compiler import compile_workflow
from coafi.compiler.asl import ArnRef, CompiledWorkflow
from coafi.definitions import WorkflowDefinition, discover_actions, load_definitions
from coafi.state import StateStore, StepRecord
from coafi.testing.lambda_context import FakeLambdaContext

ACCOUNT = "123456789012"
REGION = "us-east-1"
TABLE = "coafi-test-state"
PAYLOAD_BUCKET = "coafi-test-payloads"
BUS = "coafi-test-bus"
#: How long closing the cloud waits, at most, for work moto's interpreter still runs (see ``InProcessCloud._settle``).
SETTLE_SECONDS = 30.0
STATE_FUNCTION = "coafi-state"
RULES_FUNCTION = "coafi-rules"


@dataclass
class ExecutionResult:
    execution_arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    steps: list[StepRecord]
    history: list[dict[str, Any]] = field(default_factory=list)

    def step(self, step_id: str) -> StepRecord:
        for record in self.steps:
            if record.stepId == step_id:
                return record
        raise KeyError(f"no record of step '{step_id}'; recorded: {[s.stepId for s in self.steps]}")

    def entered_states(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves postponed annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class InProcessCloud:
    """moto with the project's handlers behind its Lambda functions and its workflows as state machines."""

    def __init__(
        self,
        project_root: Path,
        definitions: list[WorkflowDefinition] | None = None,
        extra_handlers: dict[str, Callable[[Any, Any], Any]] | None = None,
        core_root: Path | None = None,
    ) -> None:
        self.root = project_root
        self.core_root = core_root or project_root
        self.definitions = definitions
        self.handlers: dict[str, Callable[[Any, Any], Any]] = dict(extra_handlers or {})
        self.state_machines: dict[str, str] = {}
        self._stack: Any = None
        self._saved_env: dict[str, str | None] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> InProcessCloud:
        from contextlib import ExitStack

        from moto import mock_aws

        self._stack = ExitStack()
        self._set_env({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION, "COAFI_TABLE_NAME": TABLE, "COAFI_EVENT_BUS_NAME": BUS,
            "COAFI_PAYLOAD_BUCKET": PAYLOAD_BUCKET,
            "POWERTOOLS_METRICS_NAMESPACE": "CoafiTest", "POWERTOOLS_SERVICE_NAME": "coafi-test",
            "AWS_ENDPOINT_URL": None,
        })
        from coafi import aws
        from coafi.config import function_settings

        aws._cached.cache_clear()
        function_settings.cache_clear()
        try:
            self._start(mock_aws)
        except BaseException:
            self.__exit__(None, None, None)  # never leave a half-started mock behind for the next test
            raise
        return self

    def _start(self, mock_aws: Any) -> None:
        assert self._stack is not None
        self._stack.enter_context(mock_aws(config={
            "stepfunctions": {"execute_state_machine": True},
            "lambda": {"use_docker": False},
        }))
        self._stack.enter_context(self._lambda_runs_handlers())
        from coafi.local.localstack_plugin.coafi_localstack_plugin.asl_fixes import fix_parallel_error_names

        fix_parallel_error_names("moto.stepfunctions.parser")
        self._create_resources()

    def __exit__(self, *exc: object) -> None:
        from coafi import aws
        from coafi.config import function_settings

        assert self._stack is not None
        try:
            self._settle()
        finally:
            self._stack.close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        aws._cached.cache_clear()
        function_settings.cache_clear()

    def _settle(self) -> None:
        """Stop the executions still running and wait for the threads moto's interpreter left behind, before the
        mock ends. A Task whose step timed out keeps running in its own thread (moto abandons it), as does an
        execution nobody waited for: their AWS calls would otherwise reach the backends of whichever moto mock the
        next test starts (its tables, metrics), or the real endpoint."""
        from moto.stepfunctions.parser.utils import TMP_THREADS

        from coafi import aws

        sfn = aws.client("stepfunctions")
        for arn in self.state_machines.values():
            try:
                for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, statusFilter="RUNNING"):
                    for execution in page["executions"]:
                        sfn.stop_execution(executionArn=execution["executionArn"], cause="in-process cloud closed")
            except Exception:  # best effort: the threads are waited for below either way
                continue
        deadline = time.monotonic() + SETTLE_SECONDS
        for thread in list(TMP_THREADS):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]

    def _set_env(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    # -- resources -------------------------------------------------------------------------------
    def _create_resources(self) -> None:
        from coafi import aws
        from coafi.state import schema

        schema.create_table(aws.client("dynamodb"), TABLE)  # the deployed table's keys, indexes and TTL
        aws.client("s3").create_bucket(Bucket=PAYLOAD_BUCKET)
        aws.client("events").create_event_bus(Name=BUS)
        role = aws.client("iam").create_role(RoleName="coafi-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.handlers.setdefault(STATE_FUNCTION, self._import(self.core_root / "functions/state/handler.py"))
        self._deploy_rules()
        for name in sorted(discover_actions(self.root)):
            self.handlers.setdefault(name, self._import(self.root / "functions/actions" / name / "handler.py"))
        lam = aws.client("lambda")
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        for name in self.handlers:
            lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                                Code={"ZipFile": code.getvalue()})
        definitions = self.definitions
        if definitions is None:
            definitions = load_definitions([self.root / "statemachines"])
        sfn = aws.client("stepfunctions")
        compiled = {d.id: compile_workflow(d) for d in definitions}
        for workflow_id in _dependency_order(compiled):
            asl = self.substitute(compiled[workflow_id])
            arn = sfn.create_state_machine(name=f"coafi-{workflow_id}", definition=asl, roleArn=role)[
                "stateMachineArn"]
            self.state_machines[workflow_id] = arn

    def _deploy_rules(self) -> None:
        """The rules function, and the rule files of ``statemachines/rules/`` in the registry (as the deploy does)."""
        from coafi.rules.deploy import deploy_rule_files
        from coafi.rules.dynamo import DynamoRuleStore

        self.handlers.setdefault(RULES_FUNCTION, self._import(self.core_root / "functions/rules/handler.py"))
        deploy_rule_files(DynamoRuleStore(TABLE), self.root / "statemachines" / "rules")

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"

    def substitute(self, compiled: CompiledWorkflow) -> str:
        text = json.dumps(compiled.asl)
        for placeholder, ref in compiled.substitutions.items():
            text = text.replace("${" + placeholder + "}", self._resolve(ref))
        return text

    def _resolve(self, ref: ArnRef) -> str:
        if ref.kind == "state-function":
            return self.function_arn(STATE_FUNCTION)
        if ref.kind == "action":
            return self.function_arn(ref.name)
        if ref.kind == "rules-function":
            return self.function_arn(RULES_FUNCTION)
        return self.state_machines[ref.name]

    def _import(self, path: Path) -> Callable[[Any, Any], Any]:
        module = _load_module(path, f"coafi_handler_{abs(hash(str(path)))}")
        handler: Callable[[Any, Any], Any] = module.handler
        return handler

    @contextmanager
    def _lambda_runs_handlers(self) -> Iterator[None]:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        handlers = self.handlers
        original = LambdaSimpleBackend.invoke

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any,
                   response_headers: Any) -> str | bytes | None:
            name = function_name.split(":function:")[-1].split(":")[0]
            handler = handlers.get(name)
            if handler is None:
                return original(backend, function_name, qualifier, body, headers, response_headers)
            event = json.loads(body) if body else {}
            try:
                result = handler(event, FakeLambdaContext(name))
            except Exception as exc:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({
                    "errorType": type(exc).__name__, "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }).encode()
            return json.dumps(result).encode()

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]

    # -- running ---------------------------------------------------------------------------------
    def start(self, workflow_id: str, workflow_input: Any, name: str | None = None) -> str:
        import uuid

        from coafi import aws

        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machines[workflow_id],
                                  "input": json.dumps(workflow_input), "name": name or str(uuid.uuid4())}
        arn: str = aws.client("stepfunctions").start_execution(**kwargs)["executionArn"]
        return arn

    def wait(self, execution_arn: str, timeout: float = 30.0) -> ExecutionResult:
        from coafi import aws

        sfn = aws.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still RUNNING after {timeout}s")
            time.sleep(0.05)
        history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        output = description.get("output")
        return ExecutionResult(
            execution_arn=execution_arn,
            status=description["status"],
            output=json.loads(output) if output else None,
            error=description.get("error"),
            cause=description.get("cause"),
            steps=StateStore(TABLE).list_steps(execution_arn),
            history=history,
        )

    def run(self, workflow_id: str, workflow_input: Any, timeout: float = 30.0) -> ExecutionResult:
        return self.wait(self.start(workflow_id, workflow_input), timeout)


def _dependency_order(compiled: dict[str, CompiledWorkflow]) -> list[str]:
    from coafi.definitions.graph import topological_order

    deps = {wid: [c for c in cw.subworkflows if c in compiled] for wid, cw in compiled.items()}
    return topological_order(list(compiled), deps)

