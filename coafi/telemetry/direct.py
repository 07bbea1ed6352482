"""Counting from code that runs in Lambda or elsewhere (the task scheduler is called by actions, the command line
and applications alike).

In Lambda the count is an EMF document like every other COAFI metric (``coafi.telemetry``). Elsewhere stdout
belongs to the program (``coafi tasks schedule`` prints JSON), so the count is sent with one CloudWatch
``PutMetricData`` call instead, same namespace and dimensions. Either way it is best effort: a metric that
cannot be recorded is logged (Python logging, ``coafi.telemetry``) and never fails the caller's operation.
Set ``COAFI_DIRECT_METRICS=0`` to send nothing from outside Lambda.
"""

from __future__ import annotations

import logging
import os

from coafi.telemetry.facade import Labels, _dimensions, _metric_name
from coafi.telemetry.scope import current_scope

LOG = logging.getLogger("coafi.telemetry")


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def increment(name: str, by: float = 1, labels: Labels | None = None) -> bool:
    """Add ``by`` to counter ``name`` (unit Count) with the current scope's dimensions and ``labels``; True when
    it was recorded."""
    from coafi import telemetry

    try:
        if in_lambda():
            telemetry.increment_counter(name, labels, by=by)
            return True
        if os.environ.get("COAFI_DIRECT_METRICS", "1").strip() == "0" or by <= 0:
            return False
        dimensions = _dimensions(current_scope(), labels)
        from coafi import aws

        aws.client("cloudwatch").put_metric_data(
            Namespace=telemetry.default.namespace,
            MetricData=[{"MetricName": _metric_name(name), "Value": float(by), "Unit": "Count",
                         "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}],
        )
        return True
    except Exception as exc:  # best effort by design: the caller's operation has happened, the count is extra
        LOG.warning("metric %s not recorded: %s: %s", name, type(exc).__name__, exc)
        return False
