"""The one place COAFI creates boto3 clients.

boto3 itself honours ``AWS_ENDPOINT_URL`` (and per-service ``AWS_ENDPOINT_URL_<SERVICE>``), so the same
code talks to AWS, to the embedded LocalStack, or to a user's own LocalStack.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

DEFAULT_REGION = "us-east-1"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


@lru_cache(maxsize=32)
def _cached(service: str, region_name: str, endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=70)
    return boto3.session.Session().client(service, region_name=region_name, config=config)  # type: ignore[call-overload]


def client(service: str) -> Any:
    """A cached client for ``service`` in the current region and endpoint (cache keyed on both)."""
    return _cached(service, region(), os.environ.get("AWS_ENDPOINT_URL"))
