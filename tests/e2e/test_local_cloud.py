"""The embedded local cloud itself: services up, Python Lambdas run by the COAFI executor plugin (boto3 inside
the handler reaches LocalStack, errors keep their type, timeouts are enforced, layers are importable, logs reach
CloudWatch), and Step Functions sees a handler's exception class name."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from coafi.local import health
from coafi.local.harness import LocalCloudInfo

pytestmark = pytest.mark.localstack

ROLE_ARN = "arn:aws:iam::000000000000:role/coafi-local-test"


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def lambda_client(local_cloud: LocalCloudInfo) -> Any:
    return boto3.client("lambda")


@pytest.fixture
def make_function(lambda_client: Any) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(code: str, *, runtime: str = "python3.12", timeout: int = 10, layers: list[str] | None = None,
             environment: dict[str, str] | None = None) -> str:
        name = _name("coafi-test")
        lambda_client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE_ARN,
            Handler="handler.handler",
            Code={"ZipFile": _zip({"handler.py": code})},
            Timeout=timeout,
            Layers=layers or [],
            Environment={"Variables": environment or {}},
        )
        created.append(name)
        _wait_active(lambda_client, name)
        return name

    yield make
    for name in created:
        lambda_client.delete_function(FunctionName=name)


def _wait_active(lambda_client: Any, name: str, timeout: float = 30) -> None:
    # boto3's function_active_v2 waiter polls once a second; creation takes ~0.1 s here
    deadline = time.monotonic() + timeout
    while True:
        state = lambda_client.get_function_configuration(FunctionName=name)["State"]
        if state == "Active":
            return
        assert state == "Pending" and time.monotonic() < deadline, f"function {name} is {state}"
        time.sleep(0.05)


def _invoke(lambda_client: Any, name: str, event: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    response = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail")
    payload = json.loads(response["Payload"].read() or b"null")
    logs = base64.b64decode(response.get("LogResult", "")).decode()
    return {"FunctionError": response.get("FunctionError"), "Payload": payload}, logs


def test_required_services_are_ready(local_cloud: LocalCloudInfo) -> None:
    doc = health.fetch_health(local_cloud.endpoint)
    assert doc is not None
    assert health.not_ready(health.service_states(doc)) == {}


def test_lambda_writes_dynamodb_with_boto3_and_returns_a_value(
    local_cloud: LocalCloudInfo, lambda_client: Any, make_function: Callable[..., str]
) -> None:
    ddb = boto3.client("dynamodb")
    table = _name("coafi-test-table")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        name = make_function(
            "import os\n"
            "import boto3\n"
            "def handler(event, context):\n"
            "    boto3.client('dynamodb').put_item(TableName=os.environ['TABLE'],\n"
            "        Item={'PK': {'S': event['id']}, 'by': {'S': context.function_name}})\n"
            "    print('wrote', event['id'])\n"
            "    return {'written': event['id'], 'double': event['n'] * 2}\n",
            environment={"TABLE": table},
        )
        result, logs = _invoke(lambda_client, name, {"id": "item-1", "n": 21})
        assert result == {"FunctionError": None, "Payload": {"written": "item-1", "double": 42}}
        assert "wrote item-1" in logs
        item = ddb.get_item(TableName=table, Key={"PK": {"S": "item-1"}})["Item"]
        assert item["by"] == {"S": name}
        # warm: the same process serves the next invocation
        started = time.monotonic()
        result, _ = _invoke(lambda_client, name, {"id": "item-2", "n": 1})
        assert result["Payload"] == {"written": "item-2", "double": 2}
        assert time.monotonic() - started < 2.0
    finally:
        ddb.delete_table(TableName=table)


def test_handler_exception_is_a_function_error_with_its_class_name(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function("def handler(event, context):\n    raise ValueError('bad input: ' + event['x'])\n")
    result, logs = _invoke(lambda_client, name, {"x": "42"})
    assert result["FunctionError"] == "Unhandled"
    assert result["Payload"]["errorType"] == "ValueError"
    assert result["Payload"]["errorMessage"] == "bad input: 42"
    assert "[ERROR] ValueError: bad input: 42" in logs


def test_timeout_is_enforced_and_the_next_invocation_gets_a_fresh_sandbox(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function(
        "import time\n"
        "def handler(event, context):\n"
        "    print('sleeping', event['sleep'])\n"
        "    time.sleep(event['sleep'])\n"
        "    return 'woke up'\n",
        timeout=2,
    )
    started = time.monotonic()
    result, logs = _invoke(lambda_client, name, {"sleep": 10})
    elapsed = time.monotonic() - started
    assert result["FunctionError"] == "Unhandled"
    assert result["Payload"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in result["Payload"]["errorMessage"]
    assert "sleeping 10" in logs
    assert 1.9 <= elapsed < 6, elapsed
    result, _ = _invoke(lambda_client, name, {"sleep": 0})
    assert result == {"FunctionError": None, "Payload": "woke up"}


def test_layers_python_folder_is_importable_in_order(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    layer_arns = []
    for version in ("first", "second"):
        layer = lambda_client.publish_layer_version(
            LayerName=_name("coafi-test-layer"),
            Content={"ZipFile": _zip({
                "python/coafi_probe_shared.py": f"WHO = {version!r}\n",
                f"python/coafi_probe_{version}.py": "OK = True\n",
            })},
            CompatibleRuntimes=["python3.13"],
        )
        layer_arns.append(layer["LayerVersionArn"])
    name = make_function(
        "import coafi_probe_first, coafi_probe_second, coafi_probe_shared\n"
        "def handler(event, context):\n"
        "    return [coafi_probe_first.OK, coafi_probe_second.OK, coafi_probe_shared.WHO]\n",
        runtime="python3.13",
        layers=layer_arns,
    )
    result, _ = _invoke(lambda_client, name)
    # both layers are on the path; for a module in both, the later layer wins (AWS extracts them in order)
    assert result == {"FunctionError": None, "Payload": [True, True, "second"]}


def test_function_output_reaches_cloudwatch_logs(lambda_client: Any, make_function: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    name = make_function(f"def handler(event, context):\n    print('marker {marker}')\n    return 1\n")
    _invoke(lambda_client, name)
    logs = boto3.client("logs")
    deadline = time.monotonic() + 10
    messages: list[str] = []
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
            messages = [e["message"] for e in events]
        except logs.exceptions.ResourceNotFoundException:
            messages = []
        if any(marker in m for m in messages):
            break
        time.sleep(0.3)
    assert any(f"marker {marker}" in m for m in messages), messages


def test_step_functions_catch_matches_the_exception_class_name(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function(
        "class PermissionDenied(Exception):\n    pass\n"
        "def handler(event, context):\n    raise PermissionDenied('role viewer may not publish')\n"
    )
    function_arn = lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "Catch": [{"ErrorEquals": ["PermissionDenied"], "ResultPath": "$.error", "Next": "Denied"}],
                "End": True,
            },
            "Denied": {"Type": "Pass", "End": True},
        },
    }
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(name=_name("coafi-test"), definition=json.dumps(definition), roleArn=ROLE_ARN)
    try:
        execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")
        deadline = time.monotonic() + 30
        while True:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert described["status"] == "SUCCEEDED", described
        output = json.loads(described["output"])
        assert output["error"]["Error"] == "PermissionDenied"
    finally:
        sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])
