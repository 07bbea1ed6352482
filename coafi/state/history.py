"""Step records folded from an execution's history: the history events ARE the step records' storage.

A step's record is what its events say, in order:
- ``STEP_STARTED``: RUNNING, one more attempt; the first attempt's time is ``startedAt``; a previous attempt's
  end and error are cleared (a retry);
- ``STEP_SUCCEEDED`` / ``STEP_FAILED``: that status, ``endedAt``, ``durationMs`` from ``startedAt`` (the first
  attempt) to the end, the output or error; without a start before it (a decision) it started and ended at once;
- ``STEP_SKIPPED``: SKIPPED (a branch not taken).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from coafi.state.models import HistoryEvent, StepRecord

STEP_EVENTS = frozenset({"STEP_STARTED", "STEP_SUCCEEDED", "STEP_FAILED", "STEP_SKIPPED"})
_FAR = datetime.max.replace(tzinfo=UTC)


def fold_steps(events: Iterable[HistoryEvent]) -> list[StepRecord]:
    """The step records of an execution, in the order the steps started (skipped ones last)."""
    records: dict[str, StepRecord] = {}
    for event in events:
        if event.type not in STEP_EVENTS or not event.stepId:
            continue
        record = records.get(event.stepId)
        if record is None:
            record = records[event.stepId] = StepRecord(
                executionId=event.executionId, stepId=event.stepId, stepName=event.stepName or event.stepId,
                stepType=event.stepType or "task", action=event.action or "", status="RUNNING",
            )
        _apply(record, event)
    return sorted(records.values(), key=lambda r: (r.startedAt or _FAR, r.stepId))


def _apply(record: StepRecord, event: HistoryEvent) -> None:
    if event.stepName:
        record.stepName = event.stepName
    if event.stepType:
        record.stepType = event.stepType
    if event.action:
        record.action = event.action
    if event.type == "STEP_SKIPPED":
        record.status = "SKIPPED"
        return
    if event.type == "STEP_STARTED":
        record.status = "RUNNING"
        record.startedAt = record.startedAt or event.timestamp
        record.attempts += 1
        record.endedAt = record.durationMs = record.error = None
        return
    record.status = "SUCCEEDED" if event.type == "STEP_SUCCEEDED" else "FAILED"
    record.startedAt = record.startedAt or event.timestamp
    record.attempts = max(record.attempts, 1)
    record.endedAt = event.timestamp
    record.durationMs = max(0, int((event.timestamp - record.startedAt).total_seconds() * 1000))
    if record.status == "SUCCEEDED":
        record.output = event.output
        record.error = None
    else:
        record.error = event.error
