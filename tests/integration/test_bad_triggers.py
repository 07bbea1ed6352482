"""Malformed trigger events for the shipped content-generation workflow, run in process on moto: each fails the
execution at its first step with an error naming the field, is not retried (a PermanentError), runs no later
step, and leaves the execution record FAILED with that error (nothing else stored for it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi.state import StateStore
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import TABLE

GOOD = {"contentType": "article", "parameters": {"topic": "durable workflows", "lengthWords": 40},
        "metadata": {"userId": "ada", "role": "editor", "requestId": "req-bad"}}


def envelope(detail: Any) -> dict[str, Any]:
    """What an EventBridge rule hands the state machine."""
    return {"version": "0", "id": "e-1", "detail-type": "ContentRequested", "source": "coafi.content",
            "account": "123456789012", "time": "2026-11-25T09:00:00Z", "region": "us-east-1", "resources": [],
            "detail": detail}


@pytest.fixture(scope="module")
def sample_cloud(repo_root: Path) -> Iterator[InProcessCloud]:
    with InProcessCloud(repo_root) as cloud:
        yield cloud


@pytest.mark.parametrize(("detail", "message"), [
    pytest.param({k: v for k, v in GOOD.items() if k != "contentType"},
                 "invalid content request: contentType (Field required)", id="no-content-type"),
    pytest.param([GOOD], "invalid content request: input (Input should be a valid dictionary", id="detail-array"),
    pytest.param({**GOOD, "parameters": "durable workflows"},
                 "invalid content request: parameters (Input should be a valid dictionary", id="parameters-text"),
    pytest.param({**GOOD, "contentType": "poem"}, "contentType 'poem' is not one of", id="unknown-type"),
    pytest.param({**GOOD, "parameters": {"lengthWords": 40}}, "parameters.topic is required", id="no-topic"),
    pytest.param({**GOOD, "parameters": {"topic": "x", "lengthWords": "many"}},
                 "parameters.lengthWords must be a whole number", id="length-text"),
])
def test_a_malformed_trigger_event_fails_at_once_naming_the_field(
    sample_cloud: InProcessCloud, detail: Any, message: str
) -> None:
    result = sample_cloud.run("content-generation", envelope(detail))
    assert result.status == "FAILED"
    assert result.error == "InvalidContentParameters"
    assert message in (result.cause or "")
    assert [(s.stepId, s.status, s.attempts) for s in result.steps] == [("validateParameters", "FAILED", 1)]
    execution = StateStore(TABLE).get_execution(result.execution_arn)
    assert execution is not None and execution.status == "FAILED"
    assert execution.error is not None and message in execution.error.message
    assert execution.input["trigger"]["detailType"] == "ContentRequested"
