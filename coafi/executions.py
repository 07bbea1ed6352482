"""Triggering workflows and following executions: shared by ``coafi demo`` and the end-to-end tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from coafi import aws
from coafi.state import StateStore, StepRecord

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def publish_event(bus_name: str, source: str, detail_type: str, detail: dict[str, Any]) -> str:
    """Put one event on the app's bus; raises if EventBridge rejects it."""
    result = aws.client("events").put_events(Entries=[{
        "EventBusName": bus_name, "Source": source, "DetailType": detail_type, "Detail": json.dumps(detail),
    }])
    entry = result["Entries"][0]
    if result.get("FailedEntryCount") or "EventId" not in entry:
        raise RuntimeError(f"EventBridge rejected the event: {entry}")
    event_id: str = entry["EventId"]
    return event_id


def find_execution(state_machine_arn: str, marker: str, *, timeout: float = 60.0,
                   since: datetime | None = None) -> str:
    """The execution of ``state_machine_arn`` whose input contains ``marker`` (e.g. a request id)."""
    sfn = aws.client("stepfunctions")
    since = since or datetime.now(UTC) - timedelta(minutes=5)
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
            for execution in page["executions"]:
                arn = execution["executionArn"]
                if arn in seen or execution["startDate"] < since:
                    continue
                seen.add(arn)
                if marker in sfn.describe_execution(executionArn=arn).get("input", ""):
                    return str(arn)
        time.sleep(0.5)
    raise TimeoutError(f"no execution of {state_machine_arn} with {marker!r} in its input after {timeout:.0f}s; "
                       "check the trigger rule's event pattern and its DLQ")


def wait_for_execution(
    execution_arn: str, store: StateStore, *, timeout: float = 300.0,
    on_step: Callable[[StepRecord], None] | None = None,
) -> dict[str, Any]:
    """Poll until the execution ends; ``on_step`` is told each step record whose status changed."""
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    reported: dict[str, str] = {}
    while True:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if on_step is not None:
            for record in store.list_steps(execution_arn):
                if reported.get(record.stepId) != record.status:
                    reported[record.stepId] = record.status
                    on_step(record)
        if description["status"] in TERMINAL:
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still {description['status']} after {timeout:.0f}s")
        time.sleep(0.5)
