"""coafi.telemetry: EMF metrics (read back from stdout as CloudWatch would), JSON logs, spans, the step scope."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import pytest

from coafi import telemetry
from coafi.runtime import StepEvent
from coafi.telemetry import Telemetry, TelemetryError

STEP_EVENT = {
    "context": {"executionId": "arn:aws:states:eu-west-1:123456789012:execution:Coafi-orders:run-1",
                "workflowId": "orders", "stepId": "charge", "attempt": 2},
    "input": {},
}
_services = count()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_DISABLED",
                 "POWERTOOLS_DEV", "POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(name, raising=False)


def emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF documents printed since the last call."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def directive(document: dict[str, Any]) -> dict[str, Any]:
    (metrics,) = document["_aws"]["CloudWatchMetrics"]
    return metrics  # type: ignore[no-any-return]


# -- import cost ----------------------------------------------------------------------------------------


def test_importing_telemetry_imports_nothing_of_powertools() -> None:
    code = ("import sys, coafi.telemetry; "
            "print(sorted(m for m in sys.modules if m.startswith(('aws_lambda_powertools', 'aws_xray_sdk'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_designs_camel_case_names_are_the_same_functions() -> None:
    pairs = [("recordMetric", "record_metric"), ("incrementCounter", "increment_counter"),
             ("observeHistogram", "observe_histogram"), ("logInfo", "log_info"), ("logWarning", "log_warning"),
             ("logError", "log_error"), ("startTrace", "start_trace"), ("endTrace", "end_trace")]
    for camel, snake in pairs:
        assert getattr(telemetry, camel) == getattr(telemetry, snake)
        assert getattr(Telemetry, camel) is getattr(Telemetry, snake)


# -- metrics ----------------------------------------------------------------------------------------------


def test_a_metric_in_a_step_has_workflow_and_step_dimensions_and_the_execution_as_metadata(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "charge-card")  # set on every function: not a dimension
    with telemetry.step_scope(STEP_EVENT):
        telemetry.record_metric("PaymentAmount", 12.5, unit="None")
    (document,) = emf(capsys)
    assert directive(document) == {
        "Namespace": "Coafi",
        "Dimensions": [["workflow", "step"]],
        "Metrics": [{"Name": "PaymentAmount", "Unit": "None"}],
    }
    assert (document["workflow"], document["step"]) == ("orders", "charge")
    assert document["PaymentAmount"] == [12.5]
    assert document["executionId"] == STEP_EVENT["context"]["executionId"]
    assert "service" not in document


def test_labels_add_dimensions_and_a_none_label_drops_one(capsys: pytest.CaptureFixture[str]) -> None:
    with telemetry.step_scope(STEP_EVENT):
        telemetry.incrementCounter("OrdersSeen", {"region": "eu", "express": True})
        telemetry.increment_counter("WorkflowRuns", {"step": None}, by=3)
        telemetry.record_metric("Retries", 1, {"step": "override"}, unit="Count")
    seen, runs, retries = emf(capsys)
    assert directive(seen)["Dimensions"] == [["workflow", "step", "region", "express"]]
    assert (seen["region"], seen["express"], seen["OrdersSeen"]) == ("eu", "True", [1.0])
    assert directive(seen)["Metrics"] == [{"Name": "OrdersSeen", "Unit": "Count"}]
    assert directive(runs)["Dimensions"] == [["workflow"]]
    assert runs["WorkflowRuns"] == [3.0]
    assert retries["step"] == "override"


def test_outside_a_step_only_the_labels_are_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.record_metric("Loaded", 1, {"source": "s3"}, unit="Count")
    telemetry.record_metric("Bare", 2)
    loaded, bare = emf(capsys)
    assert directive(loaded)["Dimensions"] == [["source"]]
    assert "executionId" not in loaded
    assert directive(bare)["Dimensions"] == [[]]


def test_namespace_from_the_environment_or_the_instance(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ShopApp")
    telemetry.increment_counter("A")
    Telemetry(namespace="Explicit").increment_counter("B")
    first, second = emf(capsys)
    assert directive(first)["Namespace"] == "ShopApp"
    assert directive(second)["Namespace"] == "Explicit"


def test_a_batch_prints_one_document_per_dimension_set_with_every_observation(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with telemetry.step_scope(STEP_EVENT), telemetry.batch():
        for value in (120, 80, 95):
            telemetry.observe_histogram("StepDuration", value, unit="Milliseconds")
        with telemetry.batch():  # joins the outer batch
            telemetry.increment_counter("Calls")
            telemetry.increment_counter("Calls", {"api": "stripe"})
        assert emf(capsys) == []  # nothing before the batch ends
    documents = emf(capsys)
    assert len(documents) == 2
    (plain,) = [d for d in documents if "api" not in d]
    (labelled,) = [d for d in documents if "api" in d]
    assert plain["StepDuration"] == [120.0, 80.0, 95.0]
    assert plain["Calls"] == [1.0]
    assert {m["Name"]: m["Unit"] for m in directive(plain)["Metrics"]} == \
        {"StepDuration": "Milliseconds", "Calls": "Count"}
    assert directive(labelled)["Dimensions"] == [["workflow", "step", "api"]]


def test_metrics_disabled_print_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    telemetry.increment_counter("Quiet")
    assert emf(capsys) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: telemetry.record_metric("", 1), "needs a name"),
        (lambda: telemetry.record_metric("X" * 256, 1), "at most 255"),
        (lambda: telemetry.record_metric("M", float("nan")), "finite"),
        (lambda: telemetry.record_metric("M", "3"), "must be a number"),  # type: ignore[arg-type]
        (lambda: telemetry.record_metric("M", True), "must be a number"),
        (lambda: telemetry.record_metric("M", 1, unit="Parsecs"), "Parsecs"),
        (lambda: telemetry.record_metric("M", 1, {"": "x"}), "label name"),
        (lambda: telemetry.record_metric("M", 1, {"k": ""}), "label 'k'"),
        (lambda: telemetry.record_metric("M", 1, {"k": [1]}), "string, number or boolean"),  # type: ignore[dict-item]
        (lambda: telemetry.record_metric("M", 1, {f"k{i}": "v" for i in range(31)}), "at most 30"),
    ],
)
def test_bad_metrics_raise_telemetry_errors(call: Any, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TelemetryError, match=message):
        call()
    assert emf(capsys) == []


# -- scope ------------------------------------------------------------------------------------------------


def test_scope_from_a_step_event_model_nests_and_is_restored() -> None:
    event = StepEvent.model_validate(STEP_EVENT)
    assert telemetry.current_scope() == telemetry.StepScope()
    with telemetry.step_scope(event) as outer:
        assert (outer.workflow, outer.step, outer.attempt) == ("orders", "charge", 2)
        with telemetry.step_scope(step="refund") as inner:
            assert (inner.workflow, inner.step, inner.execution_id) == ("orders", "refund", outer.execution_id)
        assert telemetry.current_scope() == outer
    assert telemetry.current_scope() == telemetry.StepScope()
    token = telemetry.bind(workflow="bound")
    assert telemetry.current_scope().workflow == "bound"
    telemetry.unbind(token)
    assert telemetry.current_scope().workflow is None


def test_scope_needs_a_step_event() -> None:
    with pytest.raises(ValueError, match="not a COAFI step event"), telemetry.step_scope({"input": {}}):
        pass


def test_concurrent_tasks_keep_their_own_scope(capsys: pytest.CaptureFixture[str]) -> None:
    async def step(name: str) -> None:
        with telemetry.step_scope(workflow="wf", step=name):
            await asyncio.sleep(0.01)
            telemetry.increment_counter("Done")

    async def both() -> None:
        await asyncio.gather(step("a"), step("b"))

    asyncio.run(both())
    assert sorted(d["step"] for d in emf(capsys)) == ["a", "b"]


# -- logs -------------------------------------------------------------------------------------------------


def logged(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_lines_are_json_with_the_step_and_the_execution_as_correlation_id() -> None:
    stream = io.StringIO()
    t = Telemetry(service=f"log-test-{next(_services)}", log_stream=stream)
    with telemetry.step_scope(STEP_EVENT):
        t.log_info("charged", amount=12.5, name="card")  # 'name' is std logging's own: kept as name_
        t.logWarning("slow")
        try:
            raise TimeoutError("gateway")
        except TimeoutError as exc:
            t.log_error("charge failed", error=exc)
    t.log_info("outside")
    info, warning, error, outside = logged(stream)
    execution = STEP_EVENT["context"]["executionId"]
    assert info["level"] == "INFO" and info["message"] == "charged"
    assert (info["amount"], info["name_"]) == (12.5, "card")
    assert (info["workflow_id"], info["step_id"], info["execution_id"], info["correlation_id"]) == \
        ("orders", "charge", execution, execution)
    assert info["location"].startswith("test_log_lines_are_json")  # the caller's line, not the facade's
    assert warning["level"] == "WARNING"
    assert error["level"] == "ERROR" and error["error_type"] == "TimeoutError"
    assert "TimeoutError: gateway" in error["exception"]
    assert "step_id" not in outside and "correlation_id" not in outside


# -- traces -----------------------------------------------------------------------------------------------


class FakeSegment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.annotations: dict[str, Any] = {}
        self.metadata: dict[tuple[str, str], Any] = {}
        self.outcome: BaseException | str | None = None

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata[(namespace, key)] = value


class FakeProvider:
    """Powertools' provider protocol as the facade uses it (``in_subsegment``)."""

    def __init__(self) -> None:
        self.segments: list[FakeSegment] = []

    @contextmanager
    def in_subsegment(self, name: str | None = None, **_: Any) -> Iterator[FakeSegment]:
        segment = FakeSegment(str(name))
        self.segments.append(segment)
        try:
            yield segment
        except BaseException as exc:
            segment.outcome = exc
            raise
        segment.outcome = "ok"


def test_a_trace_is_a_subsegment_annotated_with_workflow_step_and_labels() -> None:
    provider = FakeProvider()
    t = Telemetry(tracer_provider=provider)
    with telemetry.step_scope(STEP_EVENT):
        span = t.startTrace("price lookup", {"api-name": "prices"})
        duration = t.endTrace(span)
    (segment,) = provider.segments
    assert segment.name == "## price lookup"
    assert segment.annotations == {"workflow": "orders", "step": "charge", "api_name": "prices"}
    assert segment.metadata == {("coafi", "executionId"): STEP_EVENT["context"]["executionId"]}
    assert segment.outcome == "ok"
    assert span.traced and duration == span.duration_ms and duration >= 0


def test_a_failed_block_is_recorded_on_its_span_and_re_raised() -> None:
    provider = FakeProvider()
    t = Telemetry(tracer_provider=provider)
    with pytest.raises(KeyError), t.trace("lookup") as span:
        raise KeyError("sku")
    (segment,) = provider.segments
    assert isinstance(segment.outcome, KeyError)
    assert span.error == "KeyError: 'sku'"
    with pytest.raises(TelemetryError, match="already ended"):
        t.end_trace(span)


def test_without_tracing_spans_are_only_timed() -> None:
    assert not telemetry.tracing_available()  # not in Lambda
    span = telemetry.start_trace("local")
    assert not span.traced and span.duration_ms is None
    assert telemetry.end_trace(span) >= 0
    with pytest.raises(TelemetryError, match="needs a name"):
        telemetry.start_trace(" ")


def test_tracing_needs_lambda_the_xray_sdk_and_not_being_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    installed = importlib.util.find_spec("aws_xray_sdk") is not None
    assert telemetry.tracing_available() is installed
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert telemetry.tracing_available() is False
