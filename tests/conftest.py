"""Shared fixtures: paths of the repository and of the small fixture project, and a moto account with COAFI's
state table (``moto_table``) for the unit and integration tiers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.state import schema

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PROJECT = Path(__file__).resolve().parent / "fixtures" / "project"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixture_project() -> Path:
    return FIXTURE_PROJECT

#: The state table ``moto_table`` creates.
MOTO_TABLE = "coafi-test"
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@contextmanager
def atomic_dynamodb_requests() -> Iterator[None]:
    """DynamoDB applies each request to an item atomically (a conditional write checks and writes in one step);
    moto checks the condition and then applies the update without a lock, so two threads can both pass the same
    check. Serialise moto's handling of each request, as DynamoDB would: the race the state layer must handle,
    between a read and the conditional write that follows it, stays open."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoHandler.call_action = original  # type: ignore[method-assign]


@pytest.fixture
def moto_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh moto account (fake credentials, us-east-1, no endpoint) holding COAFI's state table, named
    :data:`MOTO_TABLE`; DynamoDB requests are atomic per item (:func:`atomic_dynamodb_requests`). The boto3 clients
    ``coafi.aws`` caches are dropped before and after, so none outlives the mock."""
    from moto import mock_aws

    for key, value in MOTO_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws._cached.cache_clear()
    try:
        with mock_aws(), atomic_dynamodb_requests():
            schema.create_table(aws.client("dynamodb"), MOTO_TABLE)
            yield MOTO_TABLE
    finally:
        aws._cached.cache_clear()
