"""CloudWatch embedded metric format (EMF) on the local cloud: LocalStack's community edition stores a Lambda
function's log lines in CloudWatch Logs but never turns EMF documents into metrics, as CloudWatch Logs does on
AWS. This module does: every log line of a Lambda invocation that is an EMF document becomes ``PutMetricData``
in the function's account and region, so ``GetMetricStatistics``, dashboards and alarms see the metrics.

Self-contained (standard library; ``emf_hook.install`` hooks it into LocalStack), so the project's tests check
the parsing and publishing on moto. What follows the specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):

* A document is a log line holding one JSON object with ``_aws`` (an object with ``Timestamp``, milliseconds
  since the epoch, and ``CloudWatchMetrics``, an array of metric directives). Other lines are ordinary logs.
* Each directive: ``Namespace`` (1 to 255 characters), ``Dimensions`` (an array of dimension sets: arrays of
  at most 30 member names, each naming a root member whose value is a string of 1 to 1024 characters; an empty
  set, or no sets, publishes without dimensions), ``Metrics`` (at most 100: ``Name`` naming a root member whose
  value is a number or an array of at most 100 numbers, optional ``Unit`` among CloudWatch's units, default
  ``None``, optional ``StorageResolution`` 1 or 60, default 60).
* Every metric of a directive is published once per dimension set.
* An invalid document publishes nothing (on AWS it counts in ``AWS/Logs`` ``EMFValidationErrors``); here the
  reason is logged (``coafi.local.emf``) and counted in :attr:`EmfPublisher.rejected`.
* Timestamps more than 14 days in the past or 2 hours in the future are rejected, as CloudWatch does.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

LOG = logging.getLogger("coafi.local.emf")

UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})
MAX_DIMENSIONS = 30
MAX_METRICS = 100
MAX_VALUES = 100
MAX_DIMENSION_VALUE = 1024
MAX_NAMESPACE = 255
PAST_MS = 14 * 24 * 3600 * 1000
FUTURE_MS = 2 * 3600 * 1000
#: PutMetricData: at most 1000 metric data per request, 150 distinct values per datum.
MAX_DATA_PER_REQUEST = 1000
MAX_DISTINCT_VALUES = 150


class EmfError(ValueError):
    """An EMF document that breaks the specification; the message names the member."""


@dataclass(frozen=True)
class MetricDatum:
    """One metric of one dimension set, with every value the document gave it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]
    unit: str
    storage_resolution: int
    timestamp_ms: int

    def put_metric_data(self) -> list[dict[str, Any]]:
        """The ``MetricData`` entries of this datum (``Values``/``Counts``, split every 150 distinct values)."""
        counts = Counter(self.values)
        distinct = list(counts)
        entries = []
        for start in range(0, len(distinct), MAX_DISTINCT_VALUES):
            chunk = distinct[start:start + MAX_DISTINCT_VALUES]
            entries.append({
                "MetricName": self.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
                "Timestamp": datetime.fromtimestamp(self.timestamp_ms / 1000, UTC),
                "Values": chunk,
                "Counts": [float(counts[v]) for v in chunk],
                "Unit": self.unit,
                "StorageResolution": self.storage_resolution,
            })
        return entries


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_document(line: str, now_ms: int | None = None) -> list[MetricDatum] | None:
    """The metrics of one log line: None when the line is not an EMF document (an ordinary log line), the
    metrics when it is a valid one; :class:`EmfError` when it is an EMF document that breaks the specification."""
    text = line.strip()
    if not text.startswith("{") or '"_aws"' not in text:
        return None
    try:
        root = json.loads(text)
    except ValueError:
        return None  # not one JSON object: an ordinary log line
    if not isinstance(root, dict) or "_aws" not in root:
        return None
    meta = root["_aws"]
    if not isinstance(meta, dict) or "CloudWatchMetrics" not in meta:
        return None  # _aws without directives: not for CloudWatch metrics
    timestamp = meta.get("Timestamp")
    if not _is_number(timestamp) or timestamp < 0:
        raise EmfError(f"_aws.Timestamp: a number of milliseconds since the epoch is required, got {timestamp!r}")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not now_ms - PAST_MS <= timestamp <= now_ms + FUTURE_MS:
        raise EmfError(f"_aws.Timestamp {timestamp}: more than 14 days in the past or 2 hours in the future")
    directives = meta["CloudWatchMetrics"]
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics: an array of metric directives is required")
    datums: list[MetricDatum] = []
    for index, directive in enumerate(directives):
        datums += _directive(root, directive, f"_aws.CloudWatchMetrics[{index}]", int(timestamp))
    return datums


def _directive(root: dict[str, Any], directive: Any, path: str, timestamp: int) -> list[MetricDatum]:
    if not isinstance(directive, dict):
        raise EmfError(f"{path}: a metric directive object is required")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= MAX_NAMESPACE:
        raise EmfError(f"{path}.Namespace: a string of 1 to {MAX_NAMESPACE} characters is required")
    dimension_sets = directive.get("Dimensions")
    if not isinstance(dimension_sets, list):
        raise EmfError(f"{path}.Dimensions: an array of dimension sets is required")
    resolved_sets: list[tuple[tuple[str, str], ...]] = []
    for i, keys in enumerate(dimension_sets):
        where = f"{path}.Dimensions[{i}]"
        if not isinstance(keys, list) or len(keys) > MAX_DIMENSIONS:
            raise EmfError(f"{where}: an array of at most {MAX_DIMENSIONS} dimension names is required")
        pairs = []
        for key in keys:
            value = root.get(key) if isinstance(key, str) else None
            if not isinstance(key, str) or not isinstance(value, str) or not 1 <= len(value) <= MAX_DIMENSION_VALUE:
                raise EmfError(f"{where}: dimension {key!r} needs a root member holding a string of 1 to "
                               f"{MAX_DIMENSION_VALUE} characters, got {value!r}")
            pairs.append((key, value))
        resolved_sets.append(tuple(pairs))
    if not resolved_sets:
        resolved_sets.append(())
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS:
        raise EmfError(f"{path}.Metrics: an array of at most {MAX_METRICS} metric definitions is required")
    datums = []
    for j, metric in enumerate(metrics):
        where = f"{path}.Metrics[{j}]"
        if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str) or not metric["Name"]:
            raise EmfError(f"{where}.Name: a non-empty string is required")
        name = metric["Name"]
        unit = metric.get("Unit", "None")
        if unit not in UNITS:
            raise EmfError(f"{where}.Unit: {unit!r} is not a CloudWatch unit")
        resolution = metric.get("StorageResolution", 60)
        if resolution not in (1, 60) or isinstance(resolution, bool):
            raise EmfError(f"{where}.StorageResolution: 1 or 60, got {resolution!r}")
        raw = root.get(name)
        found = raw if isinstance(raw, list) else [raw]
        numbers = tuple(float(v) for v in found if _is_number(v))
        if not found or len(found) > MAX_VALUES or len(numbers) != len(found):
            raise EmfError(f"{where}: root member {name!r} must hold a number or an array of 1 to {MAX_VALUES} "
                           f"numbers, got {raw!r}")
        for dimensions in resolved_sets:
            datums.append(MetricDatum(namespace, name, dimensions, numbers, unit, int(resolution), timestamp))
    return datums


def extract(log_text: str, now_ms: int | None = None) -> tuple[list[MetricDatum], list[str]]:
    """The metrics of every EMF document among ``log_text``'s lines, and why each invalid one was rejected."""
    datums: list[MetricDatum] = []
    errors: list[str] = []
    for line in log_text.splitlines():
        try:
            found = parse_document(line, now_ms)
        except EmfError as exc:
            errors.append(str(exc))
            continue
        if found:
            datums += found
    return datums, errors


def put_requests(datums: Iterable[MetricDatum]) -> list[dict[str, Any]]:
    """``PutMetricData`` requests for ``datums``: one namespace each, at most 1000 metric data each."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for datum in datums:
        by_namespace.setdefault(datum.namespace, []).extend(datum.put_metric_data())
    requests = []
    for namespace, data in by_namespace.items():
        for start in range(0, len(data), MAX_DATA_PER_REQUEST):
            requests.append({"Namespace": namespace, "MetricData": data[start:start + MAX_DATA_PER_REQUEST]})
    return requests


ClientFactory = Callable[[str, str], Any]  # (role ARN, region) -> a CloudWatch client


class EmfPublisher:
    """Publishes the EMF metrics of Lambda log texts from a background thread (log handling is not slowed).
    ``client_for(role_arn, region)`` returns the CloudWatch client of the function's account and region."""

    def __init__(self, client_for: ClientFactory) -> None:
        self.client_for = client_for
        self.published = 0
        self.rejected = 0
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, role_arn: str, region: str, log_text: str) -> None:
        if '"_aws"' not in log_text:
            return  # the common case costs one substring search
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="coafi-emf", daemon=True)
                self._thread.start()
        self._queue.put((role_arn, region, log_text))

    def publish(self, role_arn: str, region: str, log_text: str) -> int:
        """Publish now (the thread's work); returns how many metric data were put."""
        datums, errors = extract(log_text)
        for error in errors:
            LOG.warning("coafi: EMF document not turned into metrics: %s", error)
        self.rejected += len(errors)
        if not datums:
            return 0
        client = self.client_for(role_arn, region)
        put = 0
        for request in put_requests(datums):
            client.put_metric_data(**request)
            put += len(request["MetricData"])
        self.published += put
        return put

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.publish(*item)
            except Exception:  # keep the thread alive: one failed put must not stop every later metric
                LOG.exception("coafi: publishing EMF metrics failed")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until everything submitted has been published (tests)."""
        self._queue.join()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
