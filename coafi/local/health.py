"""LocalStack health endpoint: fetching and interpreting ``GET /_localstack/health`` (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

HEALTH_PATH = "/_localstack/health"

#: Services COAFI needs from the local cloud and that LocalStack's health endpoint must list as ready.
#: ECR is needed by CDK bootstrap too, but localstack-core 2026.3 has no ECR *API* (not in the health document):
#: only CloudFormation's ``AWS::ECR::Repository`` resource, which is all the bootstrap stack uses.
REQUIRED_SERVICES: tuple[str, ...] = (
    "sts",
    "iam",
    "s3",
    "sqs",
    "dynamodb",
    "lambda",
    "stepfunctions",
    "events",
    "logs",
    "cloudwatch",
    "cloudformation",
    "ssm",
    "scheduler",
)

#: "available" = loaded lazily on first request, "running" = already started. Both serve requests.
READY_STATES = frozenset({"available", "running"})


def health_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + HEALTH_PATH


def fetch_health(endpoint: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The parsed health document, or ``None`` when nothing (or no LocalStack) answers at ``endpoint``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(health_url(endpoint), timeout=timeout) as response:
            doc = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def service_states(doc: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"s3": "running", ...}`` from a health document (empty when the document has no services)."""
    if not doc:
        return {}
    services = doc.get("services")
    if not isinstance(services, Mapping):
        return {}
    return {str(name): str(state) for name, state in services.items()}


def not_ready(states: Mapping[str, str], required: Iterable[str] = REQUIRED_SERVICES) -> dict[str, str]:
    """Required services that are not ready, with their state (``"missing"`` when not listed at all)."""
    return {
        name: states.get(name, "missing") for name in required if states.get(name, "missing") not in READY_STATES
    }


def is_ready(doc: Mapping[str, Any] | None, required: Iterable[str] = REQUIRED_SERVICES) -> bool:
    return bool(doc) and not not_ready(service_states(doc), required)
