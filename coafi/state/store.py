"""The data-access layer of the state table: every DynamoDB call COAFI makes for execution state.

One table (keys and indexes in ``coafi.state.schema``, the design in docs/ARCHITECTURE.md):
- the execution record (the design's WorkflowState) at ``EXEC#<id>`` / ``EXECUTION``, versioned: every write of
  it is conditional on the version it read, so concurrent writers never overwrite each other;
- the append-only history at ``EXEC#<id>`` / ``HIST#<UTC µs>#<random>``: step and workflow events, each put
  once with ``attribute_not_exists``. Step records are folded from the step events (``coafi.state.history``),
  so a step transition is one write;
- checkpoints at ``EXEC#<id>`` / ``CKPT#<UTC µs>#<random>``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import heapq
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from coafi import aws
from coafi.state import schema
from coafi.state.codec import (
    MAX_INLINE_BYTES,
    Attr,
    Payloads,
    dumps,
    epoch_seconds,
    event_id,
    event_time,
    format_time,
    n,
    now_iso,
    object_prefix,
    parse_time,
    plain,
    s,
)
from coafi.state.errors import (
    CheckpointNotFound,
    ConcurrentUpdateError,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    InvalidNextToken,
    InvalidStateUpdate,
)
from coafi.state.history import fold_steps
from coafi.state.models import (
    WORKFLOW_STATUSES,
    CheckpointInfo,
    ErrorInfo,
    EventType,
    ExecutionPage,
    ExecutionSummary,
    HistoryEvent,
    StepRecord,
    WorkflowState,
)

__all__ = ["EXECUTION_SK", "StateStore", "now_iso"]

EXECUTION_SK = "EXECUTION"
HISTORY_PREFIX = "HIST#"
CHECKPOINT_PREFIX = "CKPT#"
PAYLOAD_BUCKET_ENV = "COAFI_PAYLOAD_BUCKET"
#: Step Functions standard executions run at most a year: every item gets at least this TTL when written, so
#: nothing outlives an execution that never finishes (aborted, timed out) or a write arriving after the finish.
BACKSTOP_DAYS = 366
MAX_UPDATE_ATTEMPTS = 40
_BACKOFF_BASE_S = 0.01
_BACKOFF_CAP_S = 0.4
_SWEEP_THREADS = 8

#: WorkflowState field -> attribute of its JSON payload on the record.
_PAYLOAD_ATTRIBUTES = {"input": "inputJson", "output": "outputJson", "error": "errorJson",
                       "variables": "variablesJson", "metadata": "metadataJson"}
_EVENT_PAYLOADS = ["outputJson", "errorJson", "detailsJson"]
#: Fields ``update_state`` may change; variables and metadata are merged key by key, the rest replaced.
UPDATABLE_FIELDS = frozenset({"workflowVersion", "status", "input", "output", "error", "variables", "metadata",
                              "endTime"})
_MERGED_FIELDS = frozenset({"variables", "metadata"})
_FIXED_FIELDS = ("executionId", "workflowId", "startTime", "version", "updateTime", "expiresAt", "currentSteps",
                 "steps")

Updates = Mapping[str, Any] | Callable[[WorkflowState], Mapping[str, Any] | WorkflowState | None]


def execution_pk(execution_id: str) -> str:
    return f"EXEC#{execution_id}"


@dataclass
class _Event:
    """A history event to write."""

    type: EventType
    step_id: str | None = None
    step_name: str | None = None
    step_type: str | None = None
    action: str | None = None
    output: Any = None
    has_output: bool = False
    error: Mapping[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Conflict:
    """A conditional write lost: the record is now at ``version`` (None: it is gone)."""

    version: int | None


class StateStore:
    """Execution state in one DynamoDB table: records, history, checkpoints and queries.

    ``retention_days``: finished executions' items expire (TTL) that long after the end.
    ``payload_bucket``: where payloads too large for an item go (default: ``COAFI_PAYLOAD_BUCKET``).
    ``max_update_attempts``: how often a merge-able update is re-applied to a fresh read after losing a race.
    """

    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int = 30,
        client: Any | None = None,
        payload_bucket: str | None = None,
        s3_client: Any | None = None,
        inline_limit: int = MAX_INLINE_BYTES,
        max_update_attempts: int = MAX_UPDATE_ATTEMPTS,
    ) -> None:
        if max_update_attempts < 1:
            raise ValueError("max_update_attempts must be at least 1")
        self.table_name = table_name
        self.retention_seconds = retention_days * 86_400
        self.max_update_attempts = max_update_attempts
        self._client = client
        self._s3_client = s3_client
        bucket = payload_bucket if payload_bucket is not None else os.environ.get(PAYLOAD_BUCKET_ENV)
        self.payloads = Payloads(bucket, self._s3, inline_limit=inline_limit)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = aws.client("s3")
        return self._s3_client

    # == the design's StateManager =================================================================
    def save_state(self, state: WorkflowState) -> WorkflowState:
        """Write a whole execution record; returns it as stored (with its new version).

        Version 0: a new execution (``ExecutionAlreadyExists`` if the id is taken). Otherwise the state must
        be at the version stored, which it replaces (``ConcurrentUpdateError`` if anyone wrote in between:
        a whole-record write is never retried on its own). ``currentSteps`` and ``steps`` are derived from the
        history and not stored.
        """
        if state.version == 0:
            return self._create(state, None)

        def replace(stored: WorkflowState) -> WorkflowState:
            return state.model_copy(update={name: getattr(stored, name) for name in _FIXED_FIELDS})

        return self.update_state(state.executionId, replace, expected_version=state.version)

    def get_state(self, execution_id: str) -> WorkflowState:
        """The execution record with its step records and the steps now running (two reads)."""
        state = self.get_execution(execution_id)
        if state is None:
            raise ExecutionNotFound(execution_id)
        steps = self.list_steps(execution_id)
        return state.model_copy(update={"steps": steps,
                                        "currentSteps": [s.stepId for s in steps if s.status == "RUNNING"]})

    def update_state(
        self,
        execution_id: str,
        updates: Updates,
        *,
        expected_version: int | None = None,
        event: EventType | None = None,
        event_details: dict[str, Any] | None = None,
    ) -> WorkflowState:
        """Change the execution record without losing anyone's update; returns the record as written.

        ``updates``: ``{field: value}`` (fields in ``UPDATABLE_FIELDS``; ``variables`` and ``metadata`` are merged
        key by key, the others replaced), or a function of the current state that mutates it, or returns such
        a mapping or a whole new state. The write is conditional on the version read. When it loses a race the
        update is re-applied to a fresh read (bounded, jittered backoff), unless ``expected_version`` pins the
        version the caller based its change on: then it fails at once with ``ConcurrentUpdateError``.
        Entering a final status stamps the end time and the TTL of every item of the execution.
        ``event``: also append this history event, in the same transaction.
        """
        attempts = 1 if expected_version is not None else self.max_update_attempts
        lost = (0, 0)
        for attempt in range(1, attempts + 1):
            item = self._get_record_item(execution_id)
            if item is None:
                raise ExecutionNotFound(execution_id)
            current = self._state_from_item(item)
            if expected_version is not None and current.version != expected_version:
                raise ConcurrentUpdateError(execution_id, expected_version, current.version)
            wanted = self._apply(current, updates)
            extra = _Event(event, details=dict(event_details or {})) if event else None
            if extra and wanted.error and wanted.finished:
                extra.error = wanted.error.model_dump()
            result = self._write_update(item, current, wanted, extra)
            if isinstance(result, WorkflowState):
                return result
            if expected_version is not None:
                raise ConcurrentUpdateError(execution_id, expected_version, result.version)
            if result.version is None:
                raise ExecutionNotFound(execution_id)
            lost = (current.version, result.version)
            time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** attempt)))
        raise ConcurrentUpdateError(execution_id, lost[0], lost[1], attempts=attempts)

    def delete_state(self, execution_id: str) -> int:
        """Delete everything recorded about an execution (record, history, checkpoints, payload objects);
        returns how many items were deleted (0 if there was nothing)."""
        keys = [{"PK": item["PK"], "SK": item["SK"]}
                for item in self._query(execution_id, None, projection="PK, SK")]
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        if self.payloads.bucket:
            s3 = self._s3()
            prefix = object_prefix(execution_id)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.payloads.bucket, Prefix=prefix):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    s3.delete_objects(Bucket=self.payloads.bucket, Delete={"Objects": objects, "Quiet": True})
        return len(keys)

    def get_execution_history(self, execution_id: str) -> list[HistoryEvent]:
        """Every event of the execution, oldest first (workflow started/finished, step events, checkpoints)."""
        return [self._event_from_item(item) for item in self._query(execution_id, HISTORY_PREFIX)]

    def create_checkpoint(self, execution_id: str) -> str:
        """Snapshot the execution (record and step records); returns the checkpoint's id.

        Restarting a workflow from a checkpoint is the engine's job: ``restore_from_checkpoint`` gives it the
        state, ``WorkflowState.completed_outputs()`` the outputs of the steps that need not run again.
        """
        state = self.get_state(execution_id)
        sort_key = CHECKPOINT_PREFIX + event_id(event_time())
        checkpoint_id = f"{execution_id}#{sort_key}"
        expires = self._expiry_of(state)
        item: dict[str, Attr] = {
            "PK": s(execution_pk(execution_id)), "SK": s(sort_key), "executionId": s(execution_id),
            "checkpointId": s(checkpoint_id), "createdAt": s(now_iso()), "stateVersion": n(state.version),
            "snapshotJson": s(dumps(state.model_dump(mode="json"))), schema.TTL_ATTRIBUTE: n(expires),
        }
        self.payloads.fit(execution_id, item, ["snapshotJson"])
        event = self._event_item(execution_id, _Event(
            "CHECKPOINT_CREATED", details={"checkpointId": checkpoint_id, "version": state.version}), expires)
        self.client.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(SK)"}},
            {"Put": {"TableName": self.table_name, "Item": event, "ConditionExpression": "attribute_not_exists(SK)"}},
        ])
        return checkpoint_id

    def restore_from_checkpoint(self, checkpoint_id: str) -> WorkflowState:
        """The execution state as it was when the checkpoint was taken (record, steps, running steps)."""
        execution_id, separator, suffix = checkpoint_id.rpartition("#" + CHECKPOINT_PREFIX)
        if not separator or not execution_id or not suffix:
            raise CheckpointNotFound(checkpoint_id)
        item = self.client.get_item(
            TableName=self.table_name,
            Key={"PK": s(execution_pk(execution_id)), "SK": s(CHECKPOINT_PREFIX + suffix)},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            raise CheckpointNotFound(checkpoint_id)
        return WorkflowState.model_validate(self.payloads.load(item.get("snapshotJson")))

    def list_checkpoints(self, execution_id: str) -> list[CheckpointInfo]:
        """The execution's checkpoints, oldest first (without their snapshots)."""
        return [
            CheckpointInfo(checkpointId=p["checkpointId"], executionId=p["executionId"],
                           createdAt=p["createdAt"], version=p["stateVersion"])
            for p in (plain(item) for item in self._query(
                execution_id, CHECKPOINT_PREFIX, projection="checkpointId, executionId, createdAt, stateVersion"))
        ]

    def find_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | Iterable[str] | None = None,
        start_after: datetime | str | None = None,
        start_before: datetime | str | None = None,
        limit: int = 50,
        next_token: str | None = None,
        newest_first: bool = True,
    ) -> ExecutionPage:
        """Executions by workflow id and/or status(es), started in ``[start_after, start_before)``, newest
        first, ``limit`` per page; pass the page's ``next_token`` back for the next one.

        Reads only the indexes (never a scan). One index query per page for a workflow id and at most one
        status; with several statuses, or none (all of them), one query per status, merged by start time.
        Index reads are eventually consistent: an execution started a moment ago may show up a moment later.
        """
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, not {limit}")
        statuses = [status] if isinstance(status, str) else list(status) if status is not None else []
        unknown = [x for x in statuses if x not in WORKFLOW_STATUSES]
        if unknown:
            raise ValueError(f"unknown status {unknown}; one of {', '.join(WORKFLOW_STATUSES)}")
        low = format_time(start_after) if start_after else None
        high = format_time(start_before) if start_before else None
        if low and high and low >= high:
            raise ValueError(f"start_after ({low}) must be before start_before ({high})")
        streams = _streams(workflow_id, statuses)
        fingerprint = hashlib.sha256(dumps([streams, low, high, newest_first]).encode()).hexdigest()[:16]
        cursors: dict[str, Any] = (_decode_token(next_token, fingerprint) if next_token
                                   else {key: {} for _, key in streams})
        pages: dict[str, tuple[list[dict[str, Attr]], Any]] = {}
        for index, key in streams:
            cursor = cursors.get(key)
            if cursor is None:
                continue  # this stream is exhausted
            pages[key] = self._query_index(index, key, low, high, newest_first, limit, cursor or None)
        merged = heapq.merge(
            *[[(key, position, item) for position, item in enumerate(items)] for key, (items, _) in pages.items()],
            key=lambda entry: entry[2][schema.INDEX_SORT_KEY]["S"], reverse=newest_first,
        )
        taken = [entry for _, entry in zip(range(limit), merged, strict=False)]
        consumed: dict[str, int] = {}
        for key, position, _ in taken:
            consumed[key] = position + 1
        next_cursors: dict[str, Any] = {}
        for key, (items, last_key) in pages.items():
            used = consumed.get(key, 0)
            if used == len(items):
                next_cursors[key] = last_key  # None when DynamoDB says the stream has no more
            else:
                next_cursors[key] = _index_key(items[used - 1], _index_of(streams, key)) if used else cursors[key]
        for key in cursors:
            next_cursors.setdefault(key, cursors[key])
        executions = [ExecutionSummary.model_validate(plain(item)) for _, _, item in taken]
        more = any(cursor is not None for cursor in next_cursors.values())
        return ExecutionPage(executions=executions,
                             next_token=_encode_token(next_cursors, fingerprint) if more else None)

    # the design's names
    saveState = save_state
    getState = get_state
    updateState = update_state
    deleteState = delete_state
    getExecutionHistory = get_execution_history
    createCheckpoint = create_checkpoint
    restoreFromCheckpoint = restore_from_checkpoint
    findExecutions = find_executions

    # == what the runtime records ==================================================================
    def start_execution(
        self, execution_id: str, workflow_id: str, workflow_version: str, input_: Any, start_time: str
    ) -> None:
        """Record a new execution (and its WORKFLOW_STARTED event); a retried call changes nothing."""
        state = WorkflowState(executionId=execution_id, workflowId=workflow_id, workflowVersion=workflow_version,
                              input=input_, startTime=parse_time(start_time or now_iso()))
        try:
            self._create(state, _Event("WORKFLOW_STARTED", details={"workflowVersion": workflow_version}))
        except ExecutionAlreadyExists:
            return

    def finish_execution(
        self, execution_id: str, workflow_id: str, status: str, *, output: Any = None,
        error: dict[str, str] | None = None,
    ) -> WorkflowState:
        """Record the end of an execution (a retried call changes nothing). On FAILED, steps still RUNNING are
        recorded FAILED with the workflow's error. Every item of the execution gets its TTL."""
        updates: dict[str, Any] = {"status": status}
        if output is not None:
            updates["output"] = output
        if error is not None:
            updates["error"] = error
        event: EventType = f"WORKFLOW_{status}"  # type: ignore[assignment]
        try:
            state = self.update_state(execution_id, updates, event=event, event_details={"status": status})
        except ExecutionNotFound:  # the start was never recorded: record the end anyway
            fresh = WorkflowState.model_validate({"executionId": execution_id, "workflowId": workflow_id,
                                                  "status": status, "output": output, "error": error})
            try:
                state = self._create(fresh, _Event(event, error=error, details={"status": status}))
            except ExecutionAlreadyExists:
                return self.finish_execution(execution_id, workflow_id, status, output=output, error=error)
        if status == "FAILED":
            for step in self.list_steps(execution_id):
                if step.status == "RUNNING":
                    self._put_event(execution_id, _Event("STEP_FAILED", step_id=step.stepId,
                                                         error=error or {"type": "WorkflowFailed"}),
                                    expires_at=state.expiresAt)
        return state

    def get_execution(self, execution_id: str) -> WorkflowState | None:
        """The execution record alone (one read), or None."""
        item = self._get_record_item(execution_id)
        return self._state_from_item(item) if item else None

    def step_started(self, execution_id: str, step_id: str, *, step_name: str = "", step_type: str = "task",
                     action: str = "") -> str:
        """Record an attempt of a step starting (one write); returns the event's time."""
        return self._put_event(execution_id, _Event("STEP_STARTED", step_id=step_id, step_name=step_name or step_id,
                                                    step_type=step_type, action=action))

    def step_succeeded(self, execution_id: str, step_id: str, output: Any) -> None:
        self._put_event(execution_id, _Event("STEP_SUCCEEDED", step_id=step_id, output=output, has_output=True))

    def step_failed(self, execution_id: str, step_id: str, error: Mapping[str, Any]) -> None:
        self._put_event(execution_id, _Event("STEP_FAILED", step_id=step_id, error=error))

    def record_step(self, execution_id: str, step_id: str, *, step_name: str, step_type: str, status: str,
                    output: Any = None) -> None:
        """A step that started and ended at once (a decision: SUCCEEDED with its output), or was SKIPPED."""
        kind: EventType = "STEP_SKIPPED" if status == "SKIPPED" else f"STEP_{status}"  # type: ignore[assignment]
        self._put_event(execution_id, _Event(kind, step_id=step_id, step_name=step_name, step_type=step_type,
                                             output=output, has_output=status == "SUCCEEDED"))

    def steps_skipped(self, execution_id: str, steps: Iterable[Mapping[str, str]]) -> int:
        """Record steps of untaken branches as SKIPPED: one event each, 25 per batch."""
        backstop = self._backstop()
        items = [self._event_item(execution_id, _Event(
            "STEP_SKIPPED", step_id=step["stepId"], step_name=step.get("stepName") or step["stepId"],
            step_type=step.get("stepType") or "task"), backstop) for step in steps]
        self._batch_write([{"PutRequest": {"Item": item}} for item in items])
        return len(items)

    def list_steps(self, execution_id: str) -> list[StepRecord]:
        """Every step of an execution, in the order the steps started (skipped ones last)."""
        return fold_steps(self.get_execution_history(execution_id))

    # == records ===================================================================================
    def _create(self, state: WorkflowState, event: _Event | None) -> WorkflowState:
        now = parse_time(now_iso())
        assert now is not None
        start = state.startTime or now
        stored = state.model_copy(update={
            "version": 1, "updateTime": now, "startTime": start, "currentSteps": [], "steps": [],
            "endTime": (state.endTime or now) if state.finished else None,
        })
        stored.expiresAt = self._expiry_of(stored)
        item: dict[str, Attr] = {"PK": s(execution_pk(state.executionId)), "SK": s(EXECUTION_SK),
                                 **self._record_attributes(stored), "version": n(1),
                                 "updateTime": s(format_time(now)), schema.TTL_ATTRIBUTE: n(stored.expiresAt)}
        self.payloads.fit(state.executionId, item, list(_PAYLOAD_ATTRIBUTES.values()))
        put = {"TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}
        if event is None:
            try:
                self.client.put_item(**put)
            except self.client.exceptions.ConditionalCheckFailedException:
                raise ExecutionAlreadyExists(state.executionId) from None
        else:
            if stored.finished and stored.error and event.error is None:
                event.error = stored.error.model_dump()
            event_item = self._event_item(state.executionId, event, stored.expiresAt)
            cancelled = self._transact([{"Put": put}, {"Put": {
                "TableName": self.table_name, "Item": event_item, "ConditionExpression": "attribute_not_exists(SK)",
            }}])
            if cancelled is not None:
                raise ExecutionAlreadyExists(state.executionId)
        if stored.finished:
            self._expire_partition(state.executionId, stored.expiresAt)
        return stored

    def _apply(self, current: WorkflowState, updates: Updates) -> WorkflowState:
        draft = current.model_copy(deep=True)
        changes: Mapping[str, Any] | WorkflowState | None
        changes = updates(draft) if callable(updates) else updates
        if isinstance(changes, WorkflowState):
            wanted = changes
        elif changes is None:
            wanted = draft
        elif isinstance(changes, Mapping):
            wanted = _merge(draft, changes)
        else:
            raise InvalidStateUpdate(f"an update function returns a mapping, a WorkflowState or None, not "
                                     f"{type(changes).__name__}")
        for name in _FIXED_FIELDS:
            if getattr(wanted, name) != getattr(current, name):
                raise InvalidStateUpdate(
                    f"execution '{current.executionId}': {name} cannot be updated "
                    f"(updatable: {', '.join(sorted(UPDATABLE_FIELDS))})"
                )
        if current.finished and wanted.status != current.status:
            raise InvalidStateUpdate(
                f"execution '{current.executionId}' already ended {current.status}; its status cannot become "
                f"{wanted.status}"
            )
        if wanted.finished and wanted.endTime is None:
            wanted.endTime = parse_time(now_iso())
        return wanted

    def _write_update(self, item: dict[str, Attr], current: WorkflowState, wanted: WorkflowState,
                      event: _Event | None) -> WorkflowState | _Conflict:
        execution_id = current.executionId
        before, after = self._record_attributes(current), self._record_attributes(wanted)
        changed = {name: value for name, value in after.items() if before.get(name) != value}
        removed = [name for name in before if name not in after]
        if not changed and not removed:
            return current
        finishing = wanted.finished and not current.finished
        now = now_iso()
        version = current.version + 1
        expires = self._expiry_of(wanted) if finishing else current.expiresAt or self._backstop()
        final = {**item, **changed}
        for name in removed:
            final.pop(name, None)
        for name in self.payloads.fit(execution_id, final, list(_PAYLOAD_ATTRIBUTES.values())):
            changed[name] = final[name]
        names: dict[str, str] = {"#version": "version", "#updateTime": "updateTime"}
        values: dict[str, Attr] = {":version": n(version), ":updateTime": s(now)}
        sets = ["#version = :version", "#updateTime = :updateTime"]
        if finishing:
            names["#expires"] = schema.TTL_ATTRIBUTE
            values[":expires"] = n(expires)
            sets.append("#expires = :expires")
        for i, (name, value) in enumerate(sorted(changed.items())):
            names[f"#a{i}"] = name
            values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        expression = "SET " + ", ".join(sets)
        if removed:
            for i, name in enumerate(removed):
                names[f"#r{i}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
        if current.version:
            condition = "#version = :expected"
            values[":expected"] = n(current.version)
        else:  # a record written before versions existed
            condition = "attribute_exists(PK) AND attribute_not_exists(#version)"
        update = {"TableName": self.table_name, "Key": {"PK": s(execution_pk(execution_id)), "SK": s(EXECUTION_SK)},
                  "UpdateExpression": expression, "ConditionExpression": condition,
                  "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                  "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if event is None:
            try:
                self.client.update_item(**update)
            except self.client.exceptions.ConditionalCheckFailedException as exc:
                return _Conflict(_version_of(exc.response.get("Item")))
        else:
            event_expires = expires if wanted.finished else self._backstop()
            event_item = self._event_item(execution_id, event, event_expires)
            cancelled = self._transact([{"Update": update}, {"Put": {
                "TableName": self.table_name, "Item": event_item, "ConditionExpression": "attribute_not_exists(SK)",
            }}])
            if cancelled is not None:
                return cancelled
        written = wanted.model_copy(update={"version": version, "updateTime": parse_time(now),
                                            "expiresAt": expires})
        if finishing:
            self._expire_partition(execution_id, expires)
        return written

    def _record_attributes(self, state: WorkflowState) -> dict[str, Attr]:
        """The record's attributes that follow from the state (keys, version, updateTime and TTL aside)."""
        start = format_time(state.startTime) if state.startTime else None
        attrs: dict[str, Attr] = {
            "executionId": s(state.executionId), "workflowId": s(state.workflowId),
            "workflowVersion": s(state.workflowVersion), "status": s(state.status),
            "idxWorkflow": s(state.workflowId), "idxWorkflowStatus": s(f"{state.workflowId}#{state.status}"),
            "idxStatus": s(state.status),
        }
        if start:
            attrs["startTime"] = s(start)
            attrs[schema.INDEX_SORT_KEY] = s(f"{start}#{state.executionId}")
        if state.endTime:
            attrs["endTime"] = s(format_time(state.endTime))
        for name, attribute in _PAYLOAD_ATTRIBUTES.items():
            value = getattr(state, name)
            if isinstance(value, ErrorInfo):
                value = value.model_dump()
            if value is None or (name in _MERGED_FIELDS and not value):
                continue  # absent: read back as None (or an empty mapping)
            attrs[attribute] = s(dumps(value))
        return attrs

    def _state_from_item(self, item: Mapping[str, Attr]) -> WorkflowState:
        values = plain(item)
        data = {k: values[k] for k in ("executionId", "workflowId", "workflowVersion", "status", "startTime",
                                       "updateTime", "endTime", "version", schema.TTL_ATTRIBUTE) if k in values}
        for name, attribute in _PAYLOAD_ATTRIBUTES.items():
            value = self.payloads.load(item.get(attribute))
            if value is not None:
                data[name] = value
        return WorkflowState.model_validate(data)

    def _get_record_item(self, execution_id: str) -> dict[str, Attr] | None:
        item: dict[str, Attr] | None = self.client.get_item(
            TableName=self.table_name,
            Key={"PK": s(execution_pk(execution_id)), "SK": s(EXECUTION_SK)},
            ConsistentRead=True,
        ).get("Item")
        return item

    # == history ===================================================================================
    def _put_event(self, execution_id: str, event: _Event, *, expires_at: int | None = None) -> str:
        """Append one event (one PutItem that can never overwrite); returns its time."""
        item = self._event_item(execution_id, event, expires_at or self._backstop())
        self.client.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(SK)")
        return format_time(item["SK"]["S"].removeprefix(HISTORY_PREFIX).split("#")[0])

    def _event_item(self, execution_id: str, event: _Event, expires_at: int) -> dict[str, Attr]:
        item: dict[str, Attr] = {
            "PK": s(execution_pk(execution_id)), "SK": s(HISTORY_PREFIX + event_id(event_time())),
            "executionId": s(execution_id), "type": s(event.type), schema.TTL_ATTRIBUTE: n(expires_at),
        }
        for name, value in (("stepId", event.step_id), ("stepName", event.step_name),
                            ("stepType", event.step_type), ("action", event.action)):
            if value:
                item[name] = s(value)
        if event.has_output:
            item["outputJson"] = s(dumps(event.output))
        if event.error is not None:
            item["errorJson"] = s(dumps(dict(event.error)))
        if event.details:
            item["detailsJson"] = s(dumps(event.details))
        self.payloads.fit(execution_id, item, _EVENT_PAYLOADS)
        return item

    def _event_from_item(self, item: Mapping[str, Attr]) -> HistoryEvent:
        values = plain(item)
        identifier = str(values["SK"]).removeprefix(HISTORY_PREFIX)
        return HistoryEvent(
            eventId=identifier, executionId=values["executionId"], type=values["type"],
            timestamp=parse_time(identifier.split("#")[0]),
            stepId=values.get("stepId"), stepName=values.get("stepName"), stepType=values.get("stepType"),
            action=values.get("action"), output=self.payloads.load(item.get("outputJson")),
            error=self.payloads.load(item.get("errorJson")), details=self.payloads.load(item.get("detailsJson")) or {},
        )

    # == retention =================================================================================
    def _backstop(self) -> int:
        return epoch_seconds(datetime.now(UTC)) + BACKSTOP_DAYS * 86_400 + self.retention_seconds

    def _expiry_of(self, state: WorkflowState) -> int:
        if state.finished:
            end = state.endTime or datetime.now(UTC)
            return epoch_seconds(end) + self.retention_seconds
        return self._backstop()

    def _expire_partition(self, execution_id: str, expires_at: int) -> int:
        """Give every item of a finished execution the record's TTL (one write per item not yet stamped)."""
        keys = [{"PK": item["PK"], "SK": item["SK"]}
                for item in self._query(execution_id, None, projection="PK, SK, expiresAt")
                if item["SK"]["S"] != EXECUTION_SK and plain(item).get(schema.TTL_ATTRIBUTE) != expires_at]

        def stamp(key: dict[str, Attr]) -> None:
            with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):  # deleted meanwhile
                self.client.update_item(
                    TableName=self.table_name, Key=key, UpdateExpression="SET #expires = :expires",
                    ConditionExpression="attribute_exists(PK)", ExpressionAttributeNames={"#expires": "expiresAt"},
                    ExpressionAttributeValues={":expires": n(expires_at)},
                )

        if len(keys) <= 1:
            for key in keys:
                stamp(key)
        else:
            from concurrent.futures import ThreadPoolExecutor  # only here: it imports logging (cold start)

            with ThreadPoolExecutor(max_workers=min(_SWEEP_THREADS, len(keys))) as pool:
                list(pool.map(stamp, keys))
        return len(keys)

    # == plumbing ==================================================================================
    def _query(self, execution_id: str, prefix: str | None, *, projection: str | None = None
               ) -> Iterator[dict[str, Attr]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": s(execution_pk(execution_id)),
                                          **({":prefix": s(prefix)} if prefix else {})},
            "ConsistentRead": True,
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        while True:
            page = self.client.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _query_index(self, index: schema.Index, key: str, low: str | None, high: str | None, newest_first: bool,
                     limit: int, cursor: dict[str, Attr] | None) -> tuple[list[dict[str, Attr]], Any]:
        values: dict[str, Attr] = {":pk": s(key)}
        condition = "#pk = :pk"
        if low and high:
            condition += " AND #sk BETWEEN :low AND :high"
            values |= {":low": s(low), ":high": s(high)}
        elif low:
            condition += " AND #sk >= :low"
            values[":low"] = s(low)
        elif high:
            condition += " AND #sk < :high"
            values[":high"] = s(high)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "IndexName": index.name, "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#pk": index.partition_key,
                                         **({"#sk": schema.INDEX_SORT_KEY} if low or high else {})},
            "ExpressionAttributeValues": values, "ScanIndexForward": not newest_first, "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = cursor
        page = self.client.query(**kwargs)
        return page.get("Items", []), page.get("LastEvaluatedKey")

    def _transact(self, items: list[dict[str, Any]]) -> _Conflict | None:
        """Run a transaction whose first item is the record write; a lost condition or a conflicting
        transaction comes back as a ``_Conflict``."""
        items[0][next(iter(items[0]))]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            codes = {r.get("Code") for r in reasons}
            if not codes & {"ConditionalCheckFailed", "TransactionConflict"}:
                raise
            first = reasons[0] if reasons else {}
            return _Conflict(_version_of(first.get("Item")))
        return None

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for i in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table_name: requests[i:i + 25]}
            delay = 0.05
            while pending:
                response = self.client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)


def _merge(state: WorkflowState, updates: Mapping[str, Any]) -> WorkflowState:
    unknown = sorted(set(updates) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidStateUpdate(
            f"execution '{state.executionId}': cannot update {', '.join(unknown)} "
            f"(updatable: {', '.join(sorted(UPDATABLE_FIELDS))})"
        )
    data = state.model_dump()
    for name, value in updates.items():
        if name in _MERGED_FIELDS:
            if not isinstance(value, Mapping):
                raise InvalidStateUpdate(f"{name} updates are merged: give a mapping, not {type(value).__name__}")
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    try:
        return WorkflowState.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidStateUpdate(f"execution '{state.executionId}': {problems}") from None


def _version_of(item: Mapping[str, Attr] | None) -> int | None:
    if not item:
        return None
    version = plain(item).get("version")
    return int(version) if version is not None else 0


# -- find_executions: index streams and opaque page tokens ---------------------------------------------
def _streams(workflow_id: str | None, statuses: list[str]) -> list[tuple[schema.Index, str]]:
    """(index, partition key value) per sorted stream a query merges."""
    if workflow_id and statuses:
        return [(schema.BY_WORKFLOW_STATUS, f"{workflow_id}#{x}") for x in dict.fromkeys(statuses)]
    if workflow_id:
        return [(schema.BY_WORKFLOW, workflow_id)]
    return [(schema.BY_STATUS, x) for x in dict.fromkeys(statuses or WORKFLOW_STATUSES)]


def _index_of(streams: list[tuple[schema.Index, str]], key: str) -> schema.Index:
    return next(index for index, k in streams if k == key)


def _index_key(item: Mapping[str, Attr], index: schema.Index) -> dict[str, Attr]:
    """The ExclusiveStartKey that resumes an index query right after ``item``."""
    return {name: item[name] for name in ("PK", "SK", index.partition_key, schema.INDEX_SORT_KEY)}


def _encode_token(cursors: Mapping[str, Any], fingerprint: str) -> str:
    raw = json.dumps({"q": fingerprint, "c": cursors}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        cursors = data["c"]
        valid = data["q"] == fingerprint and isinstance(cursors, dict)
    except (binascii.Error, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise InvalidNextToken("next_token does not belong to this query: pass the same filters that produced it")
    return dict(cursors)

