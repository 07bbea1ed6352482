"""Powertools in every handler: X-Ray traces (read from a UDP socket standing in for the X-Ray daemon), the state
function's workflow metrics, TaskScheduled/TaskDispatched, and counting outside Lambda with PutMetricData."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coafi import aws, telemetry
from coafi.runtime.state_ops import parse_operation
from coafi.telemetry import direct, tracing
from coafi.telemetry.operations import record_operation

REPO_ROOT = Path(__file__).resolve().parents[2]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Coafi-orders:run-7"
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.fixture(autouse=True)
def outside_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME", "POWERTOOLS_METRICS_NAMESPACE",
                 "POWERTOOLS_TRACE_DISABLED", "COAFI_DIRECT_METRICS", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    tracing.reset()
    yield
    tracing.reset()


def emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def metrics_of(document: dict[str, Any]) -> list[str]:
    return [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


# -- traces ---------------------------------------------------------------------------------------------------


def run_traced(code: str, trace_id: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``code`` as a traced Lambda would (a new process: the X-Ray SDK configures itself once per process),
    sending its segments to a UDP socket here; returns the process and the documents it sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        env = {**os.environ, "LAMBDA_TASK_ROOT": str(REPO_ROOT), "AWS_LAMBDA_FUNCTION_NAME": "orders-state",
               "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}", "_X_AMZN_TRACE_ID": trace_id,
               "POWERTOOLS_SERVICE_NAME": "orders", "AWS_DEFAULT_REGION": "us-east-1"}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                              cwd=REPO_ROOT)
        sent: list[dict[str, Any]] = []
        daemon.setblocking(False)  # the process has exited: what it sent is in the socket's buffer
        while True:
            try:
                header, body = daemon.recv(65536).decode().split("\n", 1)
            except BlockingIOError:
                break
            assert json.loads(header) == {"format": "json", "version": 1}
            sent.append(json.loads(body))
    return done, sent


def test_a_traced_handler_is_an_xray_subsegment_and_only_botocore_is_patched() -> None:
    pytest.importorskip("aws_xray_sdk")
    code = """
import json
from coafi.telemetry.tracing import traced
import aws_xray_sdk.core.patcher as patcher

@traced
def handler(event, context):
    return {"echo": event}

print(json.dumps([handler({"a": 1}, None), sorted(patcher._PATCHED_MODULES)]))
"""
    done, (segment,) = run_traced(code, f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"echo": {"a": 1}}, ["botocore"]]
    assert (segment["name"], segment["type"], segment["trace_id"]) == ("## handler", "subsegment", TRACE_ID)
    assert segment["annotations"] == {"ColdStart": True, "Service": "orders"}
    assert "metadata" not in segment  # the response (state data) is not copied into the trace


def test_an_action_step_is_a_subsegment_with_workflow_and_step_annotations() -> None:
    pytest.importorskip("aws_xray_sdk")
    code = f"""
from coafi.telemetry.tracing import get_tracer
from coafi import telemetry

tracer = get_tracer()
with tracer.provider.in_subsegment(name="## handler"):
    with telemetry.step_scope(workflow="orders", step="charge", execution_id={EXECUTION!r}):
        with telemetry.trace("step charge") as span:
            pass
assert span.traced
"""
    done, (step, segment) = run_traced(code, f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1")
    assert done.returncode == 0, done.stderr
    assert (segment["name"], step["parent_id"]) == ("## handler", segment["id"])  # streamed one by one
    assert step["name"] == "## step charge"
    assert step["annotations"] == {"workflow": "orders", "step": "charge"}
    assert step["metadata"] == {"coafi": {"executionId": EXECUTION}}


def test_outside_lambda_a_traced_handler_runs_as_is() -> None:
    calls: list[Any] = []

    @tracing.traced
    def handler(event: Any, context: Any) -> Any:
        calls.append((event, context))
        return "done"

    assert handler({"x": 1}, "ctx") == "done"
    assert calls == [({"x": 1}, "ctx")]
    assert tracing.get_tracer() is None
    assert "aws_xray_sdk.core" not in sys.modules or tracing.tracing_available() is False


def test_tracing_disabled_by_powertools_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    assert tracing.get_tracer() is None


# -- the state function's operations --------------------------------------------------------------------------


def op(**fields: Any) -> Any:
    return parse_operation({"executionId": EXECUTION, "workflowId": "orders", **fields})


@pytest.mark.parametrize(("fields", "dimensions", "names"), [
    ({"op": "start", "input": {}}, ["workflow"], ["WorkflowStarted"]),
    ({"op": "finish", "status": "SUCCEEDED"}, ["workflow"], ["WorkflowSucceeded"]),
    ({"op": "finish", "status": "FAILED", "error": {"Error": "Boom", "Cause": "x"}}, ["workflow"], ["WorkflowFailed"]),
    ({"op": "step", "stepId": "wait", "stepType": "wait", "status": "RUNNING"}, ["workflow", "step"],
     ["StepStarted"]),
    ({"op": "step", "stepId": "child", "stepType": "subworkflow", "status": "SUCCEEDED"}, ["workflow", "step"],
     ["StepSucceeded"]),
    ({"op": "step", "stepId": "ext", "stepType": "task", "status": "FAILED"}, ["workflow", "step"],
     ["StepFailed"]),
    ({"op": "decide", "stepId": "route", "branch": "fast"}, ["workflow", "step"], ["StepStarted", "StepSucceeded"]),
])
def test_each_state_operation_is_counted_once_with_its_dimensions(
    fields: dict[str, Any], dimensions: list[str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    record_operation(op(**fields))
    (document,) = emf(capsys)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [dimensions]
    assert metrics_of(document) == names
    assert document["workflow"] == "orders"
    assert document.get("step") == fields.get("stepId")
    assert document["executionId"] == EXECUTION


def test_the_state_function_logs_each_operation_with_the_execution_and_step(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from aws_lambda_powertools import Logger

    logger = Logger(service="coafi-state", logger_handler=logging.StreamHandler(sys.stderr))
    logger.append_keys(execution_id=EXECUTION, workflow_id="orders", step_id="charge")
    logger.set_correlation_id(EXECUTION)
    record_operation(op(op="finish", status="FAILED", error={"Error": "CardDeclined", "Cause": "no"}), logger)
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert line["message"] == "workflow failed"
    assert (line["execution_id"], line["correlation_id"], line["error_type"]) == (EXECUTION, EXECUTION,
                                                                                 "CardDeclined")


# -- counting outside Lambda ----------------------------------------------------------------------------------


def test_in_lambda_a_direct_count_is_an_emf_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-charge")
    with telemetry.step_scope(workflow="orders", step="charge"):
        assert direct.increment("TaskScheduled", 2)
    (document,) = emf(capsys)
    assert metrics_of(document) == ["TaskScheduled"]
    assert (document["TaskScheduled"], document["step"]) == ([2.0], "charge")


def test_a_metric_that_cannot_be_sent_never_fails_the_caller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with caplog.at_level(logging.WARNING, logger="coafi.telemetry"):
        assert direct.increment("TaskScheduled") is False
    assert "metric TaskScheduled not recorded" in caplog.text
    monkeypatch.setenv("COAFI_DIRECT_METRICS", "0")
    assert direct.increment("TaskScheduled") is False


def statistics(name: str, dimensions: dict[str, str] | None = None) -> float:
    now = datetime.now(UTC)
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=telemetry.default.namespace, MetricName=name, Period=3600, Statistics=["Sum"],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
        Dimensions=[{"Name": k, "Value": v} for k, v in (dimensions or {}).items()],
    )["Datapoints"]
    return float(sum(p["Sum"] for p in points))


def test_the_scheduler_counts_scheduled_tasks_with_put_metric_data(fixture_project: Path, repo_root: Path) -> None:
    from coafi.tasks import Task, TaskScheduler
    from coafi.tasks.testing import create_task_resources
    from coafi.testing import InProcessCloud
    from coafi.testing.inprocess import TABLE

    with InProcessCloud(fixture_project, definitions=[], core_root=repo_root):
        scheduler = TaskScheduler(create_task_resources().settings(TABLE))
        scheduler.schedule_task(Task(type="echo"))
        scheduler.schedule_task_with_delay(Task(type="echo"), 3600)
        scheduler.schedule_tasks([Task(type="echo"), Task(type="echo"), Task(type="echo")])
        assert statistics("TaskScheduled") == 5


# -- the layer ------------------------------------------------------------------------------------------------


def test_the_layer_leaves_out_what_the_lambda_runtime_provides(tmp_path: Path) -> None:
    """The X-Ray SDK depends on botocore; the layer must not shadow the runtime's copy (/opt before /var/runtime)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("coafi_test_bundling", REPO_ROOT / "infra" / "bundling.py")
    assert spec is not None and spec.loader is not None
    bundling = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bundling
    spec.loader.exec_module(bundling)
    kept = ["aws_xray_sdk", "aws_xray_sdk-2.15.0.dist-info", "wrapt", "typing_extensions.py", "jmespath"]
    dropped = ["botocore", "botocore-1.40.0.dist-info", "boto3", "s3transfer", "dateutil",
               "python_dateutil-2.9.0.dist-info", "urllib3", "six.py", "six-1.17.0.dist-info"]
    for name in kept + dropped:
        (tmp_path / name).mkdir() if not name.endswith(".py") else (tmp_path / name).write_text("")
    bundling._drop_runtime_provided(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert "aws-xray-sdk" in (REPO_ROOT / "functions" / "requirements.txt").read_text()
