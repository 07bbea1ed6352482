"""Telemetry for action authors: metrics, logs and traces on CloudWatch and X-Ray, through Powertools.

    from coafi import telemetry
    from coafi.runtime import StepEvent, action

    @action
    def handler(event: StepEvent) -> dict:
        with telemetry.step_scope(event):                  # workflow/step/execution on everything below
            telemetry.increment_counter("OrdersSeen", {"region": event.input["region"]})
            with telemetry.trace("price lookup"):
                price = lookup(event.input)
            telemetry.observe_histogram("Price", price, unit="None")
            telemetry.log_info("priced", price=price)
        return {"price": price}

The design's camelCase names (``recordMetric``, ``incrementCounter``, ``observeHistogram``, ``logInfo``,
``logWarning``, ``logError``, ``startTrace``, ``endTrace``) are aliases of the snake_case functions.
Importing this module imports nothing of Powertools; the first metric, log line or trace does.
"""

from __future__ import annotations

from coafi.telemetry.facade import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    Span,
    Telemetry,
    TelemetryError,
)
from coafi.telemetry.scope import StepScope, bind, current_scope, scope_of, step_scope, unbind
from coafi.telemetry.tracing import traced, tracing_available

#: The instance behind the module's functions (``configure`` changes its settings).
default = Telemetry()

configure = default.configure
record_metric = default.record_metric
increment_counter = default.increment_counter
observe_histogram = default.observe_histogram
batch = default.batch
log_info = default.log_info
log_warning = default.log_warning
log_error = default.log_error
start_trace = default.start_trace
end_trace = default.end_trace
trace = default.trace

recordMetric = record_metric
incrementCounter = increment_counter
observeHistogram = observe_histogram
logInfo = log_info
logWarning = log_warning
logError = log_error
startTrace = start_trace
endTrace = end_trace

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "Span",
    "StepScope",
    "Telemetry",
    "TelemetryError",
    "batch",
    "bind",
    "configure",
    "current_scope",
    "default",
    "endTrace",
    "end_trace",
    "incrementCounter",
    "increment_counter",
    "logError",
    "logInfo",
    "logWarning",
    "log_error",
    "log_info",
    "log_warning",
    "observeHistogram",
    "observe_histogram",
    "recordMetric",
    "record_metric",
    "scope_of",
    "startTrace",
    "start_trace",
    "step_scope",
    "trace",
    "traced",
    "tracing_available",
    "unbind",
]
