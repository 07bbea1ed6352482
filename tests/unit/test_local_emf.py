"""EMF on the local cloud (the LocalStack plugin's emf.py): documents parsed per the specification, published with
PutMetricData (checked with GetMetricStatistics on moto), invalid documents rejected with the member named."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from coafi import telemetry
from coafi.local.localstack_plugin.coafi_localstack_plugin.emf import (
    EmfError,
    EmfPublisher,
    MetricDatum,
    extract,
    parse_document,
    put_requests,
)

NOW_MS = int(time.time() * 1000)
ROLE = "arn:aws:iam::000000000000:role/orders-fn"


def document(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_aws": {"Timestamp": NOW_MS, "CloudWatchMetrics": [{
            "Namespace": "Coafi", "Dimensions": [["workflow", "step"]],
            "Metrics": [{"Name": "StepStarted", "Unit": "Count"}, {"Name": "StepDuration", "Unit": "Milliseconds"}],
        }]},
        "workflow": "orders", "step": "charge", "StepStarted": [1.0], "StepDuration": [12.5, 7.0, 12.5],
        "executionId": "arn:aws:states:us-east-1:000000000000:execution:Coafi-orders:r1",
    }
    base.update(overrides)
    return base


def line(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


def test_a_document_yields_each_metric_per_dimension_set() -> None:
    doc = document()
    doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = [["workflow", "step"], ["workflow"], []]
    datums = parse_document(line(doc), NOW_MS)
    assert datums is not None
    assert [(d.name, d.dimensions) for d in datums] == [
        ("StepStarted", (("workflow", "orders"), ("step", "charge"))),
        ("StepStarted", (("workflow", "orders"),)),
        ("StepStarted", ()),
        ("StepDuration", (("workflow", "orders"), ("step", "charge"))),
        ("StepDuration", (("workflow", "orders"),)),
        ("StepDuration", ()),
    ]
    duration = datums[3]
    assert (duration.values, duration.unit, duration.storage_resolution) == ((12.5, 7.0, 12.5), "Milliseconds", 60)


def test_defaults_single_values_and_no_dimension_sets() -> None:
    doc = document(Calls=3)
    doc["_aws"]["CloudWatchMetrics"] = [{"Namespace": "App", "Dimensions": [],
                                         "Metrics": [{"Name": "Calls", "StorageResolution": 1}]}]
    (datum,) = parse_document(line(doc), NOW_MS) or []
    assert datum == MetricDatum("App", "Calls", (), (3.0,), "None", 1, NOW_MS)


@pytest.mark.parametrize("text", [
    "START RequestId: 1 Version: $LATEST",
    '{"level": "INFO", "message": "step started", "execution_id": "x"}',
    '{"_aws": {"Timestamp": 1}}',  # no directives: metadata for something else
    '{"_aws": broken json',
    "[1, 2]",
])
def test_ordinary_log_lines_are_not_documents(text: str) -> None:
    assert parse_document(text, NOW_MS) is None


def broken(path: list[Any], value: Any) -> dict[str, Any]:
    doc = document()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    (broken(["_aws", "Timestamp"], "now"), "_aws.Timestamp: a number of milliseconds"),
    (broken(["_aws", "Timestamp"], KeyError), "_aws.Timestamp: a number of milliseconds"),
    (broken(["_aws", "Timestamp"], NOW_MS - 15 * 86400 * 1000), "more than 14 days in the past"),
    (broken(["_aws", "Timestamp"], NOW_MS + 3 * 3600 * 1000), "2 hours in the future"),
    (broken(["_aws", "CloudWatchMetrics"], {"Namespace": "x"}), "_aws.CloudWatchMetrics: an array"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Namespace"], ""), "CloudWatchMetrics[0].Namespace: a string of 1"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Dimensions"], KeyError), "CloudWatchMetrics[0].Dimensions: an array"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Dimensions"], [["workflow", "missing"]]),
     "Dimensions[0]: dimension 'missing' needs a root member holding a string"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Dimensions"], [[f"d{i}" for i in range(31)]]),
     "Dimensions[0]: an array of at most 30"),
    (broken(["workflow"], 7), "dimension 'workflow' needs a root member holding a string"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Metrics", 0, "Unit"], "Furlongs"),
     "Metrics[0].Unit: 'Furlongs' is not a CloudWatch unit"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Metrics", 1, "StorageResolution"], 30),
     "Metrics[1].StorageResolution: 1 or 60"),
    (broken(["_aws", "CloudWatchMetrics", 0, "Metrics", 0, "Name"], KeyError), "Metrics[0].Name: a non-empty string"),
    (broken(["StepStarted"], "one"), "root member 'StepStarted' must hold a number"),
    (broken(["StepStarted"], KeyError), "root member 'StepStarted' must hold a number"),
    (broken(["StepStarted"], list(range(101))), "an array of 1 to 100 numbers"),
    (broken(["StepStarted"], []), "an array of 1 to 100 numbers"),
    (broken(["StepStarted"], True), "root member 'StepStarted' must hold a number"),
])
def test_an_invalid_document_is_rejected_naming_the_member(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(EmfError, match=None) as caught:
        parse_document(line(doc), NOW_MS)
    assert message in str(caught.value)


def test_extract_keeps_going_past_invalid_documents() -> None:
    text = "\n".join(["START RequestId: 1", line(broken(["StepStarted"], "x")), line(document()), "END"])
    datums, errors = extract(text, NOW_MS)
    assert [d.name for d in datums] == ["StepStarted", "StepDuration"]
    assert len(errors) == 1 and "StepStarted" in errors[0]


def test_put_requests_use_values_and_counts_and_respect_the_api_limits() -> None:
    many = MetricDatum("Coafi", "Latency", (("workflow", "w"),), tuple(float(v % 200) for v in range(400)),
                       "Milliseconds", 60, NOW_MS)
    small = MetricDatum("Other", "Calls", (), (1.0, 1.0, 2.0), "Count", 1, NOW_MS)
    requests = put_requests([many, small])
    assert [r["Namespace"] for r in requests] == ["Coafi", "Other"]
    first, second = requests[0]["MetricData"]  # 200 distinct values: 150 + 50
    assert (len(first["Values"]), len(second["Values"])) == (150, 50)
    assert sum(first["Counts"]) + sum(second["Counts"]) == 400
    (calls,) = requests[1]["MetricData"]
    assert (calls["Values"], calls["Counts"], calls["StorageResolution"]) == ([1.0, 2.0], [2.0, 1.0], 1)
    assert calls["Timestamp"] == datetime.fromtimestamp(NOW_MS / 1000, UTC)


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test")


def stats(client: Any, name: str, dimensions: dict[str, str], statistic: str = "Sum") -> float:
    now = datetime.now(UTC)
    points = client.get_metric_statistics(
        Namespace="Coafi", MetricName=name, Statistics=[statistic], Period=3600,
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()])["Datapoints"]
    return float(sum(p[statistic] for p in points))


def test_what_powertools_prints_becomes_metrics_readable_with_get_metric_statistics(cloudwatch: Any) -> None:
    output = io.StringIO()
    workflow = f"orders-{uuid.uuid4().hex[:8]}"  # of its own: moto keeps metrics while another mock is active
    with redirect_stdout(output), telemetry.step_scope(workflow=workflow, step="charge", execution_id="e1"), \
            telemetry.batch():
        telemetry.increment_counter("StepStarted")
        telemetry.increment_counter("StepSucceeded")
        for value in (10, 30, 20):
            telemetry.observe_histogram("StepDuration", value, unit="Milliseconds")
    logs = f"START RequestId: r1\n{output.getvalue()}END RequestId: r1\n"
    calls: list[tuple[str, str]] = []

    def client_for(role: str, region: str) -> Any:
        calls.append((role, region))
        return cloudwatch

    publisher = EmfPublisher(client_for)
    publisher.submit(ROLE, "us-east-1", logs)
    publisher.submit(ROLE, "us-east-1", "no metrics here\n")  # never reaches the thread
    publisher.flush()
    assert calls == [(ROLE, "us-east-1")]
    where = {"workflow": workflow, "step": "charge"}
    assert stats(cloudwatch, "StepStarted", where) == 1
    assert stats(cloudwatch, "StepSucceeded", where) == 1
    assert stats(cloudwatch, "StepDuration", where) == 60
    assert stats(cloudwatch, "StepDuration", where, "Maximum") == 30
    assert (publisher.published, publisher.rejected) == (3, 0)


def test_a_failing_put_does_not_stop_the_publisher(cloudwatch: Any) -> None:
    attempts: list[int] = []

    def client_for(role: str, region: str) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("CloudWatch unreachable")
        return cloudwatch

    # a workflow name of its own: moto keeps metrics while any other mock is active in the session
    workflow = f"orders-{uuid.uuid4().hex[:8]}"
    publisher = EmfPublisher(client_for)
    publisher.submit(ROLE, "us-east-1", line(document(workflow=workflow)))
    publisher.submit(ROLE, "us-east-1", line(document(workflow=workflow)))
    publisher.flush()
    assert stats(cloudwatch, "StepStarted", {"workflow": workflow, "step": "charge"}) == 1
