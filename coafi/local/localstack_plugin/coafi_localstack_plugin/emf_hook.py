"""Hooks :mod:`coafi_localstack_plugin.emf` into LocalStack's Lambda log handling (kept apart from emf.py, which
the project's tests import without LocalStack)."""

from __future__ import annotations

import logging
from typing import Any

from coafi_localstack_plugin.emf import EmfPublisher

LOG = logging.getLogger("coafi.local.emf")


def install() -> EmfPublisher | None:
    """Publish the EMF metrics of every Lambda invocation's logs: wraps LocalStack's Lambda log handler, which
    hands each invocation's log text to CloudWatch Logs. Returns the publisher, or None if LocalStack's log
    handler is not where this version expects it."""
    try:
        from localstack.services.lambda_.invocation.logs import LogHandler
    except ImportError:
        return None
    from localstack.aws.connect import connect_to
    from localstack.utils.aws.client_types import ServicePrincipal

    def client_for(role_arn: str, region: str) -> Any:
        # as the log handler does for CloudWatch Logs: the function's role, so the metric lands in its account
        return connect_to.with_assumed_role(role_arn=role_arn, region_name=region,
                                            service_principal=ServicePrincipal(ServicePrincipal.lambda_)).cloudwatch

    publisher = EmfPublisher(client_for)
    original = LogHandler.add_logs
    if getattr(original, "_coafi_emf", False):
        return None

    def add_logs(self: Any, log_item: Any) -> None:
        original(self, log_item)
        try:
            publisher.submit(self.role_arn, self.region, log_item.logs)
        except Exception:  # never let metrics break log delivery
            LOG.exception("coafi: EMF extraction failed")

    add_logs._coafi_emf = True  # type: ignore[attr-defined]
    LogHandler.add_logs = add_logs  # type: ignore[method-assign]
    return publisher
