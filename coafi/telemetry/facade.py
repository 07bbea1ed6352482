"""The TelemetryModule of the original design, as a thin facade over Powertools for AWS Lambda.

- Metrics are CloudWatch Embedded Metric Format documents printed to stdout (Powertools' EMF provider); Lambda
  ships them to CloudWatch Logs, which turns them into metrics. Dimensions: ``workflow`` and ``step`` of the
  current scope, then the call's labels; the execution id is EMF metadata (searchable in the logs, not a
  dimension: one per execution would be a new metric each time).
- Logs are Powertools Logger JSON lines with ``workflow_id``, ``step_id``, ``execution_id`` and
  ``correlation_id`` (the execution id).
- Traces are X-Ray subsegments through Powertools Tracer when running in Lambda with the X-Ray SDK installed
  and tracing not disabled; otherwise spans are only timed.

Nothing of Powertools is imported until the first metric, log line or trace.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, TextIO

from coafi.telemetry.scope import StepScope, current_scope
from coafi.telemetry.tracing import get_tracer

DEFAULT_NAMESPACE = "Coafi"
DEFAULT_SERVICE = "coafi"
#: CloudWatch limits for metric names, dimension names and values, and dimensions per metric.
MAX_METRIC_NAME = 255
MAX_DIMENSION_NAME = 255
MAX_DIMENSION_VALUE = 1024
MAX_DIMENSIONS = 30


@functools.cache
def _reserved_log_keys() -> frozenset[str]:
    """Keys std logging keeps for itself: a field with one of these names is logged as ``<name>_``. (logging is
    imported with the first log line, as Powertools' Logger is: not at cold start.)"""
    import logging

    return frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"})

_ANNOTATION_KEY = re.compile(r"[^A-Za-z0-9_]")

Labels = Mapping[str, str | int | float | bool | None]


class TelemetryError(ValueError):
    """A metric, label or span the facade cannot record; the message says which and why."""


@dataclass
class Span:
    """A timed operation; an X-Ray subsegment when tracing is on. End it with ``end_trace``."""

    name: str
    labels: dict[str, str]
    started_ns: int = field(default_factory=time.perf_counter_ns)
    ended_ns: int | None = None
    error: str | None = None
    segment: Any = None
    _manager: Any = field(default=None, repr=False)

    @property
    def duration_ms(self) -> float | None:
        return None if self.ended_ns is None else (self.ended_ns - self.started_ns) / 1_000_000

    @property
    def traced(self) -> bool:
        """Whether the span is an X-Ray subsegment (not only timed)."""
        return self.segment is not None


class Telemetry:
    """Metrics, logs and traces for action authors. ``coafi.telemetry`` holds a default instance whose methods
    are the module's functions; make your own for another namespace or service.

    ``namespace``: metric namespace (default ``POWERTOOLS_METRICS_NAMESPACE``, else ``Coafi``);
    ``service``: logger and tracer service (default ``POWERTOOLS_SERVICE_NAME``, else ``coafi``);
    ``log_stream``: where log lines go (default stdout); ``tracer_provider``: a Powertools tracing provider
    (default: Powertools Tracer's when tracing is on, else none: spans are only timed).
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        service: str | None = None,
        log_stream: TextIO | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self._lock = threading.Lock()
        self.configure(namespace=namespace, service=service, log_stream=log_stream, tracer_provider=tracer_provider)

    def configure(
        self,
        *,
        namespace: str | None = None,
        service: str | None = None,
        log_stream: TextIO | None = None,
        tracer_provider: Any = None,
    ) -> None:
        """Change the settings (the logger and tracer are made again on next use)."""
        with self._lock:
            self._namespace = namespace
            self._service = service
            self._log_stream = log_stream
            self._tracer_provider = tracer_provider
            self._logger: Any = None
            self._tracer_checked = tracer_provider is not None

    @property
    def namespace(self) -> str:
        return self._namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE

    @property
    def service(self) -> str:
        return self._service or os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE

    # -- metrics ----------------------------------------------------------------------------------
    def record_metric(self, name: str, value: float, labels: Labels | None = None, *, unit: str = "None",
                      high_resolution: bool = False) -> None:
        """Record ``value`` of metric ``name``. ``unit``: a CloudWatch unit (``Count``, ``Milliseconds``,
        ``Bytes``, ...); ``labels`` add dimensions (a None value drops that dimension, e.g. ``{"step": None}``
        for a workflow-level metric inside a step)."""
        metric = _metric_name(name)
        number = _metric_value(metric, value)
        scope = current_scope()
        dimensions = _dimensions(scope, labels)
        batch = _BATCH.get()
        if batch is not None:
            key = (tuple(sorted(dimensions.items())), scope.execution_id)
            provider = batch.get(key)
            if provider is None:
                provider = batch[key] = self._provider(dimensions, scope)
        else:
            provider = self._provider(dimensions, scope)
        try:
            provider.add_metric(name=metric, unit=unit, value=number, resolution=1 if high_resolution else 60)
        except Exception as exc:  # Powertools' MetricUnitError etc.: say what was wrong in our terms
            raise TelemetryError(f"metric {metric!r}: {exc}") from None
        if batch is None:
            provider.flush_metrics()

    def increment_counter(self, name: str, labels: Labels | None = None, *, by: float = 1) -> None:
        """Add ``by`` (default 1) to counter ``name`` (unit Count; CloudWatch's Sum is the count)."""
        self.record_metric(name, by, labels, unit="Count")

    def observe_histogram(self, name: str, value: float, labels: Labels | None = None, *,
                          unit: str = "None") -> None:
        """Record one observation of a distribution (e.g. a latency with ``unit="Milliseconds"``). Every value
        is kept, so CloudWatch's percentile statistics (p50, p99) work on it."""
        self.record_metric(name, value, labels, unit=unit)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the metrics recorded in the block and print them at its end, one EMF document per set of
        dimensions (instead of one per metric). Nested blocks join the outermost."""
        if _BATCH.get() is not None:
            yield
            return
        providers: dict[Any, Any] = {}
        token = _BATCH.set(providers)
        try:
            yield
        finally:
            _BATCH.reset(token)
            for key in sorted(providers, key=repr):
                providers[key].flush_metrics()

    def _provider(self, dimensions: Mapping[str, str], scope: StepScope) -> Any:
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

        # service="": Powertools would otherwise add a "service" dimension, and the dimension set would no
        # longer be exactly workflow/step/labels (the set dashboards and alarms look metrics up by).
        provider = AmazonCloudWatchEMFProvider(namespace=self.namespace, service="")
        for key, value in dimensions.items():
            provider.add_dimension(name=key, value=value)
        if scope.execution_id:
            provider.add_metadata(key="executionId", value=scope.execution_id)
        return provider

    # -- logs -------------------------------------------------------------------------------------
    def log_info(self, message: str, **fields: Any) -> None:
        self._log("info", message, fields, None)

    def log_warning(self, message: str, **fields: Any) -> None:
        self._log("warning", message, fields, None)

    def log_error(self, message: str, *, error: BaseException | None = None, **fields: Any) -> None:
        """Log an error; ``error`` adds the exception's type, message and traceback."""
        self._log("error", message, fields, error)

    def _log(self, level: str, message: str, fields: Mapping[str, Any], error: BaseException | None) -> None:
        reserved = _reserved_log_keys()
        extra = {(f"{k}_" if k in reserved else k): v for k, v in fields.items()}
        scope = current_scope()
        for key, value in (("workflow_id", scope.workflow), ("step_id", scope.step),
                           ("execution_id", scope.execution_id), ("correlation_id", scope.execution_id)):
            if value is not None:
                extra.setdefault(key, value)
        if error is not None:
            extra.setdefault("error_type", type(error).__name__)
        exc_info = (type(error), error, error.__traceback__) if error is not None else None
        # stacklevel 4: the line that called log_info/log_warning/log_error (Powertools, _log, log_* between)
        getattr(self._get_logger(), level)(str(message), stacklevel=4, extra=extra, exc_info=exc_info)

    def _get_logger(self) -> Any:
        with self._lock:
            if self._logger is None:
                import logging

                from aws_lambda_powertools import Logger

                handler = logging.StreamHandler(self._log_stream) if self._log_stream is not None else None
                self._logger = Logger(service=self.service, logger_handler=handler)
            return self._logger

    # -- traces -----------------------------------------------------------------------------------
    def start_trace(self, name: str, labels: Labels | None = None) -> Span:
        """Start timing ``name`` (an X-Ray subsegment ``## name`` when tracing is on); end it with
        ``end_trace``. Labels become X-Ray annotations (searchable), the execution id metadata."""
        if not isinstance(name, str) or not name.strip():
            raise TelemetryError(f"a trace needs a name, got {name!r}")
        scope = current_scope()
        values = _dimensions(scope, labels)
        span = Span(name=name.strip(), labels=values)
        provider = self._get_tracer_provider()
        if provider is not None:
            manager = provider.in_subsegment(name=f"## {span.name}")
            segment = manager.__enter__()
            for key, value in values.items():
                segment.put_annotation(key=_ANNOTATION_KEY.sub("_", key), value=value)
            if scope.execution_id:
                segment.put_metadata(key="executionId", value=scope.execution_id, namespace="coafi")
            span.segment, span._manager = segment, manager
        return span

    def end_trace(self, span: Span, *, error: BaseException | None = None) -> float:
        """End ``span`` (recording ``error`` on the subsegment when given); returns its duration in ms."""
        if span.ended_ns is not None:
            raise TelemetryError(f"trace {span.name!r} has already ended")
        span.ended_ns = time.perf_counter_ns()
        if error is not None:
            span.error = f"{type(error).__name__}: {error}"
        if span._manager is not None:
            manager, span._manager = span._manager, None
            if error is not None:
                manager.__exit__(type(error), error, error.__traceback__)
            else:
                manager.__exit__(None, None, None)
        duration = span.duration_ms
        assert duration is not None
        return duration

    @contextmanager
    def trace(self, name: str, labels: Labels | None = None) -> Iterator[Span]:
        """``start_trace``/``end_trace`` around a block; an exception is recorded on the span and re-raised."""
        span = self.start_trace(name, labels)
        try:
            yield span
        except BaseException as exc:
            self.end_trace(span, error=exc)
            raise
        self.end_trace(span)

    def _get_tracer_provider(self) -> Any:
        with self._lock:
            if not self._tracer_checked:
                self._tracer_checked = True
                tracer = get_tracer()  # one Tracer per process, shared with the handlers' (coafi.telemetry.tracing)
                if tracer is not None:
                    self._tracer_provider = tracer.provider
            return self._tracer_provider

    # -- the design's names -----------------------------------------------------------------------
    recordMetric = record_metric
    incrementCounter = increment_counter
    observeHistogram = observe_histogram
    logInfo = log_info
    logWarning = log_warning
    logError = log_error
    startTrace = start_trace
    endTrace = end_trace


_BATCH: ContextVar[dict[Any, Any] | None] = ContextVar("coafi_telemetry_batch", default=None)


def _metric_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TelemetryError(f"a metric needs a name, got {name!r}")
    text = name.strip()
    if len(text) > MAX_METRIC_NAME:
        raise TelemetryError(f"metric name {text[:40]!r}... is {len(text)} characters; at most {MAX_METRIC_NAME}")
    return text


def _metric_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TelemetryError(f"metric {name!r}: value must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise TelemetryError(f"metric {name!r}: CloudWatch takes finite numbers only, got {value!r}")
    return number


def _dimensions(scope: StepScope, labels: Labels | None) -> dict[str, str]:
    """``workflow`` and ``step`` of the scope, then the labels (a None label removes that key)."""
    values: dict[str, str | None] = {"workflow": scope.workflow, "step": scope.step}
    for key, value in (labels or {}).items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_DIMENSION_NAME:
            raise TelemetryError(f"label name {key!r}: 1 to {MAX_DIMENSION_NAME} characters")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise TelemetryError(f"label {key!r}: a string, number or boolean, got {type(value).__name__}")
        values[key] = None if value is None else str(value)
    dimensions: dict[str, str] = {}
    for key, text in values.items():
        if text is None:
            continue
        if not text.strip() or len(text) > MAX_DIMENSION_VALUE:
            raise TelemetryError(f"label {key!r}: a value of 1 to {MAX_DIMENSION_VALUE} characters, got {text!r}")
        dimensions[key] = text
    if len(dimensions) > MAX_DIMENSIONS:
        raise TelemetryError(f"{len(dimensions)} labels; CloudWatch takes at most {MAX_DIMENSIONS} dimensions")
    return dimensions
