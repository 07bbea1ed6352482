"""Faults on the embedded LocalStack: each one is injected for real, the workflow recovers, and the records show it.

* a step cut off by its ``timeoutSeconds`` (``States.Timeout``) is retried and the execution succeeds;
* a Lambda function cut off by its own timeout (the local executor kills it: ``Sandbox.Timedout``) likewise;
* the Lambda's host process killed mid-step (SIGKILL, by the test): ``Runtime.ExitError``, retried, succeeds;
* DynamoDB writes throttled (``ProvisionedThroughputExceededException`` from LocalStack's own DynamoDB error
  injection) are retried by the state store's client; nothing is lost or written twice;
* LocalStack restarted between two steps of a long wait: the state table keeps the execution's record and history
  (the embedded LocalStack keeps DynamoDB's data on disk), while the Step Functions execution and the functions
  are gone: community LocalStack keeps no service state across a restart (that is LocalStack Pro's persistence),
  so the rest of the run cannot happen locally. This test runs last in the session (marker
  ``restarts_local_cloud``) because the restart also loses the session's deployment.

Duplicate EventBridge delivery (one execution) belongs to the idempotent-start work and is not covered here.

The misbehaving action is ``tests/e2e/fault_probe/handler.py``: created next to the deployed app as its own
function (the app's role, layer and environment), never shipped with the app. Its first attempt per step records
itself (and its PID) in the state table and sleeps; later attempts return at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.compiler import compile_workflow
from coafi.definitions.models import WorkflowDefinition
from coafi.deploy import StackOutputs
from coafi.executions import wait_for_execution
from coafi.local import harness
from coafi.local.harness import LocalCloudInfo
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

PROBE_DIR = Path(__file__).with_name("fault_probe")
PROBE_ACTION = "fault-probe"
SHORT_FUNCTION_TIMEOUT_S = 6  # the function that is cut off by its own timeout
# the step cut off by its timeout: long enough for the retry's cold start on a busy machine; the function's own
# timeout then stops the abandoned first attempt before it could write anything
STEP_TIMEOUT_S = 15
MEDIUM_FUNCTION_TIMEOUT_S = 40
LONG_FUNCTION_TIMEOUT_S = 120  # the function whose process the test kills
THROTTLED = "ProvisionedThroughputExceededException"


# -- fixtures: the probe functions and state machines next to the deployed app --------------------------------
@dataclass
class Probe:
    stack: StackOutputs
    short_function: str  # ARN, function timeout SHORT_FUNCTION_TIMEOUT_S
    medium_function: str  # ARN, function timeout MEDIUM_FUNCTION_TIMEOUT_S
    long_function: str  # ARN, function timeout LONG_FUNCTION_TIMEOUT_S
    role_arn: str  # the content-generation state machine's role

    @property
    def store(self) -> StateStore:
        return StateStore(self.stack.state_table_name)

    def machine(self, steps: list[dict[str, Any]], function_arn: str) -> str:
        """Compile a workflow of probe steps and create it as a state machine; returns its ARN."""
        definition = WorkflowDefinition.model_validate(
            {"id": f"faults-{uuid.uuid4().hex[:8]}", "name": "Fault probe", "version": "1.0.0",
             "triggers": [{"type": "manual"}], "steps": steps})
        compiled = compile_workflow(definition)
        asl = compiled.to_json(indent=None)
        for placeholder, ref in compiled.substitutions.items():
            target = function_arn if ref.kind == "action" else self.stack.state_function_arn
            asl = asl.replace("${" + placeholder + "}", target)
        arn: str = aws.client("stepfunctions").create_state_machine(
            name=definition.id, definition=asl, roleArn=self.role_arn)["stateMachineArn"]
        return arn

    def run(self, machine_arn: str, timeout: float = 240) -> tuple[str, dict[str, Any]]:
        arn = self.start(machine_arn)
        return arn, wait_for_execution(arn, self.store, timeout=timeout)

    def start(self, machine_arn: str) -> str:
        arn: str = aws.client("stepfunctions").start_execution(
            stateMachineArn=machine_arn, input=json.dumps({"fault": "probe"}))["executionArn"]
        return arn

    def marker(self, execution_arn: str, step_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = aws.client("dynamodb").get_item(
            TableName=self.stack.state_table_name, ConsistentRead=True,
            Key={"PK": {"S": f"FAULT#{execution_arn}"}, "SK": {"S": step_id}}).get("Item")
        return item


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.py")):
            archive.write(path, path.name)
    return buffer.getvalue()


def _app_function(stack: StackOutputs) -> dict[str, Any]:
    """Configuration of one of the app's action functions (the one content-generation's generateContent calls)."""
    sfn = aws.client("stepfunctions")
    definition = json.loads(sfn.describe_state_machine(
        stateMachineArn=stack.workflow_arn("content-generation"))["definition"])
    target = definition["States"]["coafi.run"]["Branches"][0]["States"]["generateContent"]["Parameters"]
    config: dict[str, Any] = aws.client("lambda").get_function_configuration(FunctionName=target["FunctionName"])
    return config


@pytest.fixture(scope="module")
def probe(stack: StackOutputs) -> Iterator[Probe]:
    lam = aws.client("lambda")
    template = _app_function(stack)
    code = _zip(PROBE_DIR)
    created: list[str] = []

    def create(timeout: int) -> str:
        name = f"coafi-fault-probe-{uuid.uuid4().hex[:8]}"
        arn: str = lam.create_function(
            FunctionName=name, Runtime=template["Runtime"], Role=template["Role"], Handler="handler.handler",
            Code={"ZipFile": code}, Timeout=timeout, MemorySize=template["MemorySize"],
            Layers=[layer["Arn"] for layer in template.get("Layers", [])],
            Environment={"Variables": template.get("Environment", {}).get("Variables", {})},
        )["FunctionArn"]
        created.append(name)
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        return arn

    role = aws.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.workflow_arn("content-generation"))["roleArn"]
    try:
        yield Probe(stack, create(SHORT_FUNCTION_TIMEOUT_S), create(MEDIUM_FUNCTION_TIMEOUT_S),
                    create(LONG_FUNCTION_TIMEOUT_S), role)
    finally:
        for name in created:
            with contextlib.suppress(lam.exceptions.ResourceNotFoundException):  # gone with a LocalStack restart
                lam.delete_function(FunctionName=name)


def probe_step(step_id: str, sleep_s: float, *, timeout_s: int | None = None,
               retry_on: list[str] | None = None, depends: list[str] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id, "name": step_id, "type": "task", "action": PROBE_ACTION,
        "parameters": {"firstAttemptSleepSeconds": sleep_s},
        "retryPolicy": {"maxAttempts": 2, "intervalSeconds": 1, "backoffRate": 1,
                        **({"retryOn": retry_on} if retry_on else {})},
    }
    if timeout_s is not None:
        step["timeoutSeconds"] = timeout_s
    if depends:
        step["dependencies"] = depends
    return step


def sfn_history(arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in aws.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def task_errors(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(error, cause) of every failed or timed-out Task attempt, in order."""
    found: list[tuple[str, str]] = []
    for event in history:
        for key in ("taskFailedEventDetails", "taskTimedOutEventDetails", "lambdaFunctionFailedEventDetails",
                    "lambdaFunctionTimedOutEventDetails"):
            if key in event:
                found.append((str(event[key].get("error", "")), str(event[key].get("cause", ""))))
    return found


def assert_recovered(probe: Probe, arn: str, description: dict[str, Any], step_id: str) -> None:
    """The execution succeeded on the step's second attempt, and the state table tells the same story."""
    assert description["status"] == "SUCCEEDED", description.get("cause")
    output = json.loads(description["output"])
    result = output["steps"][step_id]["output"]
    assert result == {"attempt": 1, "first": False}  # the output is the retry's, not the cut-off first attempt's
    marker = probe.marker(arn, step_id)
    assert marker is not None and marker["firstAttempt"]["N"] == "0" and marker["laterAttempts"]["N"] == "1"
    steps = {s.stepId: s for s in probe.store.list_steps(arn)}
    assert steps[step_id].status == "SUCCEEDED" and steps[step_id].attempts == 2
    record = probe.store.get_execution(arn)
    assert record is not None and record.status == "SUCCEEDED"


# -- timeouts ------------------------------------------------------------------------------------------------
def test_a_step_cut_off_by_its_timeout_is_retried_and_the_execution_succeeds(probe: Probe) -> None:
    machine = probe.machine([probe_step("slow", 90, timeout_s=STEP_TIMEOUT_S, retry_on=["States.Timeout"])],
                            probe.medium_function)
    arn, description = probe.run(machine)
    assert_recovered(probe, arn, description, "slow")
    assert [error for error, _ in task_errors(sfn_history(arn))] == ["States.Timeout"]


def test_a_lambda_cut_off_by_the_function_timeout_is_retried_and_the_execution_succeeds(probe: Probe) -> None:
    # no step timeout: the local executor kills the handler at the function's own timeout, as Lambda does
    machine = probe.machine([probe_step("slow", 60, retry_on=["Sandbox.Timedout"])], probe.short_function)
    arn, description = probe.run(machine)
    assert_recovered(probe, arn, description, "slow")
    errors = task_errors(sfn_history(arn))
    assert [error for error, _ in errors] == ["Sandbox.Timedout"]
    assert f"Task timed out after {SHORT_FUNCTION_TIMEOUT_S}.00 seconds" in errors[0][1]


# -- the executor's process killed mid-step --------------------------------------------------------------------
def _lambda_process(pid: int, function_arn: str) -> bool:
    """Is ``pid`` a local Lambda runtime process of this function (so the test kills nothing else)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    name = function_arn.rsplit(":", 1)[-1]
    return (any(part.endswith(b"bootstrap.py") for part in cmdline)
            and f"AWS_LAMBDA_FUNCTION_NAME={name}".encode() in environ)


def test_the_lambda_process_killed_mid_step_is_retried_and_the_execution_succeeds(
    probe: Probe, local_cloud: LocalCloudInfo,
) -> None:
    if not local_cloud.embedded:
        pytest.skip("the Lambda processes of an external LocalStack are not on this host")
    machine = probe.machine([probe_step("victim", 90, retry_on=["Runtime.ExitError"])], probe.long_function)
    arn = probe.start(machine)
    deadline = time.monotonic() + 120
    while (marker := probe.marker(arn, "victim")) is None:  # the first attempt is running and has said its PID
        assert time.monotonic() < deadline, "the first attempt never started"
        time.sleep(0.2)
    pid = int(marker["pid"]["N"])
    assert _lambda_process(pid, probe.long_function), f"PID {pid} is not the probe's Lambda process"
    os.kill(pid, signal.SIGKILL)
    description = wait_for_execution(arn, probe.store, timeout=240)
    assert_recovered(probe, arn, description, "victim")
    errors = task_errors(sfn_history(arn))
    assert [error for error, _ in errors] == ["Runtime.ExitError"]
    assert "signal: SIGKILL" in errors[0][1]


# -- throttled DynamoDB writes -----------------------------------------------------------------------------------
# How throttling is injected: LocalStack's own DynamoDB error injection (DYNAMODB_WRITE_ERROR_PROBABILITY, set at
# run time through its config endpoint, which the embedded LocalStack enables). The DynamoDB API itself answers
# PutItem/UpdateItem/TransactWriteItems/... with a real 400 ProvisionedThroughputExceededException, so the state
# store's real client (coafi.aws: botocore adaptive retries, 8 attempts) and the Lambda handlers' clients retry
# it through their normal code path, in every process. A botocore hook would fake the response inside one client
# and leave the handlers untouched; DynamoDB Local has no capacity model to exhaust. At probability 1 every write
# is refused, so "throttled" is certain, not random; the test turns injection off once a throttle has been seen.
def _set_config(endpoint: str, variable: str, value: float) -> None:
    request = urllib.request.Request(f"{endpoint}/_localstack/config", method="POST",
                                     data=json.dumps({"variable": variable, "value": value}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        assert json.loads(response.read())["value"] == value


@pytest.fixture
def write_throttling(local_cloud: LocalCloudInfo) -> Iterator[Any]:
    """``on()`` / ``off()`` LocalStack's write throttling; always off after the test."""
    endpoint = local_cloud.endpoint
    try:
        _set_config(endpoint, "DYNAMODB_WRITE_ERROR_PROBABILITY", 0.0)
    except urllib.error.HTTPError as exc:
        pytest.skip(f"LocalStack at {endpoint} has no config endpoint (start it with ENABLE_CONFIG_UPDATES=1): {exc}")

    class Switch:
        @staticmethod
        def on() -> None:
            _set_config(endpoint, "DYNAMODB_WRITE_ERROR_PROBABILITY", 1.0)

        @staticmethod
        def off() -> None:
            _set_config(endpoint, "DYNAMODB_WRITE_ERROR_PROBABILITY", 0.0)

    try:
        yield Switch
    finally:
        Switch.off()


def test_a_throttled_state_write_is_retried_by_the_store_and_lands_once(
    stack: StackOutputs, write_throttling: Any,
) -> None:
    store = StateStore(stack.state_table_name)
    client = store.client
    throttled = threading.Event()

    def saw(response: Any = None, **kwargs: Any) -> None:  # botocore's needs-retry: once per attempt
        parsed = response[1] if response else {}
        if parsed.get("Error", {}).get("Code") == THROTTLED:
            throttled.set()

    execution_id = f"arn:aws:states:us-east-1:000000000000:execution:faults:{uuid.uuid4()}"
    client.meta.events.register("needs-retry.dynamodb.PutItem", saw)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.step_started(execution_id, "throttled", step_name="Throttled", step_type="task", action="x")
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    try:
        write_throttling.on()
        writer = threading.Thread(target=write)
        writer.start()
        assert throttled.wait(60), "LocalStack never throttled the write"
        write_throttling.off()
        writer.join(120)
    finally:
        client.meta.events.unregister("needs-retry.dynamodb.PutItem", saw)
    assert not writer.is_alive() and not errors, errors
    events = store.get_execution_history(execution_id)
    assert [(e.type, e.stepId) for e in events] == [("STEP_STARTED", "throttled")]  # landed, and only once
    store.delete_state(execution_id)


def test_a_workflow_whose_writes_are_throttled_still_finishes_with_a_complete_record(
    stack: StackOutputs, write_throttling: Any, local_cloud: LocalCloudInfo, repo_root: Path,
) -> None:
    """Every write of the whole app is refused for a while; the handlers' own retries carry the execution through."""
    log = repo_root / ".coafi" / "local" / "localstack.log"
    if not local_cloud.embedded or not log.is_file():
        pytest.skip("needs the embedded LocalStack's request log to see the throttled writes")
    offset = log.stat().st_size
    sfn = aws.client("stepfunctions")
    request_id = f"faults-{uuid.uuid4()}"
    write_throttling.on()
    try:
        arn: str = sfn.start_execution(stateMachineArn=stack.workflow_arn("content-generation"), input=json.dumps({
            "contentType": "article", "parameters": {"topic": "throttling", "lengthWords": 40},
            "metadata": {"requestId": request_id, "userId": "tester", "role": "editor"}}))["executionArn"]
        deadline = time.monotonic() + 120
        # the execution's first write (coafi.start's TransactWriteItems) is refused at least once
        while f"dynamodb.TransactWriteItems => 400 ({THROTTLED})" not in _read_from(log, offset):
            assert time.monotonic() < deadline, "no throttled write of the execution seen in the LocalStack log"
            time.sleep(0.2)
    finally:
        write_throttling.off()
    store = StateStore(stack.state_table_name)
    description = wait_for_execution(arn, store, timeout=240)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    record = store.get_execution(arn)
    assert record is not None and record.status == "SUCCEEDED"
    types = [e.type for e in store.get_execution_history(arn)]
    assert types.count("WORKFLOW_STARTED") == 1 and types[-1] == "WORKFLOW_SUCCEEDED"
    assert all(s.status == "SUCCEEDED" and s.attempts == 1 for s in store.list_steps(arn))


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", errors="replace")


# -- LocalStack restarted during a long wait ---------------------------------------------------------------------
@pytest.mark.restarts_local_cloud
def test_a_local_cloud_restart_during_a_long_wait_keeps_the_state_table_but_not_the_execution(
    probe: Probe, local_cloud: LocalCloudInfo, repo_root: Path,
) -> None:
    if not (local_cloud.embedded and local_cloud.started):
        pytest.skip("restarts only an embedded LocalStack this session started (it loses every deployed resource)")
    machine = probe.machine([
        probe_step("before", 0),
        {"id": "hold", "name": "Hold", "type": "wait", "parameters": {"seconds": 3600}, "dependencies": ["before"]},
        probe_step("after", 0, depends=["hold"]),
    ], probe.medium_function)
    arn = probe.start(machine)
    store = probe.store
    deadline = time.monotonic() + 180
    while {s.stepId: s.status for s in store.list_steps(arn)}.get("hold") != "RUNNING":
        assert time.monotonic() < deadline, "the execution never reached its wait"
        time.sleep(0.5)
    record_before = store.get_execution(arn)
    history_before = store.get_execution_history(arn)
    assert record_before is not None and record_before.status == "RUNNING"

    harness.down(project_root=repo_root)
    harness.up(project_root=repo_root)

    # what AWS would keep and the local cloud keeps too: the state table's items, unchanged
    assert store.get_execution(arn) == record_before
    assert store.get_execution_history(arn) == history_before
    steps = {s.stepId: s.status for s in store.list_steps(arn)}
    assert steps == {"before": "SUCCEEDED", "hold": "RUNNING"}
    # what AWS would keep and community LocalStack does not: the execution itself and the deployed functions
    sfn = aws.client("stepfunctions")
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn=arn)
    lam = aws.client("lambda")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=probe.medium_function)
