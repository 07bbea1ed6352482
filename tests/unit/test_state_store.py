"""The state manager against moto: records, lost-update safety, history, checkpoints, payloads, retention."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from coafi import aws
from coafi.state import (
    CheckpointNotFound,
    ConcurrentUpdateError,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    InvalidStateUpdate,
    PayloadTooLarge,
    StateManager,
    StateStore,
    WorkflowState,
    schema,
)
from coafi.state.codec import MAX_INLINE_BYTES
from coafi.state.store import BACKSTOP_DAYS
from tests.conftest import atomic_dynamodb_requests

TABLE = "state-test"
BUCKET = "state-test-payloads"
RETENTION_DAYS = 7
EXEC = "arn:aws:states:us-east-1:123456789012:execution:coafi-demo:run-1"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("COAFI_PAYLOAD_BUCKET", raising=False)
    aws._cached.cache_clear()
    with mock_aws(), atomic_dynamodb_requests():
        schema.create_table(aws.client("dynamodb"), TABLE)
        aws.client("s3").create_bucket(Bucket=BUCKET)
        yield
    aws._cached.cache_clear()


@pytest.fixture
def store(cloud: None) -> StateStore:
    return StateStore(TABLE, retention_days=RETENTION_DAYS, payload_bucket=BUCKET)


@contextmanager
def dynamodb_calls(store: StateStore) -> Iterator[Counter[str]]:
    """Counts the DynamoDB operations ``store`` sends while the block runs."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = store.client.meta.events
    events.register("before-call.dynamodb", count, unique_id="state-test-counter")
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", unique_id="state-test-counter")


def items(store: StateStore, execution_id: str = EXEC) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = store.client.query(
        TableName=TABLE, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"EXEC#{execution_id}"}}, ConsistentRead=True,
    )["Items"]
    return found


def started(store: StateStore, execution_id: str = EXEC, **extra: Any) -> WorkflowState:
    return store.save_state(WorkflowState(executionId=execution_id, workflowId="demo", input={"n": 1}, **extra))


# -- records ---------------------------------------------------------------------------------------------------
def test_save_get_update_delete_round_trip(store: StateStore) -> None:
    saved = started(store, workflowVersion="3", variables={"a": 1}, metadata={"owner": "ada"})
    assert saved.version == 1 and saved.status == "RUNNING" and saved.startTime is not None
    state = store.get_state(EXEC)
    assert (state.input, state.variables, state.metadata, state.workflowVersion) == ({"n": 1}, {"a": 1},
                                                                                    {"owner": "ada"}, "3")
    assert state.version == 1 and state.currentSteps == [] and state.steps == []

    updated = store.update_state(EXEC, {"variables": {"b": 2}, "metadata": {"team": "x"}})
    assert updated.version == 2
    assert updated.variables == {"a": 1, "b": 2}  # merged, not replaced
    assert updated.metadata == {"owner": "ada", "team": "x"}
    assert store.get_state(EXEC).model_dump(exclude={"updateTime"}) == updated.model_dump(exclude={"updateTime"})

    assert store.delete_state(EXEC) == 1
    with pytest.raises(ExecutionNotFound, match="run-1"):
        store.get_state(EXEC)
    assert store.get_execution(EXEC) is None
    assert store.delete_state(EXEC) == 0


def test_the_design_names_are_the_same_operations(store: StateStore) -> None:
    assert StateManager is StateStore
    state = store.saveState(WorkflowState(executionId=EXEC, workflowId="demo"))
    assert store.getState(EXEC).version == state.version == 1
    assert store.updateState(EXEC, {"output": {"ok": True}}).output == {"ok": True}
    checkpoint = store.createCheckpoint(EXEC)
    assert store.restoreFromCheckpoint(checkpoint).output == {"ok": True}
    assert [e.type for e in store.getExecutionHistory(EXEC)] == ["CHECKPOINT_CREATED"]
    assert store.findExecutions(workflow_id="demo").executions[0].executionId == EXEC
    assert store.deleteState(EXEC) == 3  # record, checkpoint, its history event


def test_fifty_concurrent_updates_are_all_kept(store: StateStore) -> None:
    started(store)
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def bump(i: int) -> None:
        try:
            barrier.wait()
            store.update_state(EXEC, lambda s: {"variables": {f"v{i}": i,
                                                             "counter": s.variables.get("counter", 0) + 1}})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(50)]
    with dynamodb_calls(store) as calls:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert calls["UpdateItem"] > 50, "the writers did not race: the test proves nothing"
    state = store.get_state(EXEC)
    assert state.variables.pop("counter") == 50
    assert state.variables == {f"v{i}": i for i in range(50)}
    assert state.version == 51


def test_a_pinned_version_fails_loudly_and_overwrites_nothing(store: StateStore) -> None:
    first = started(store)
    store.update_state(EXEC, {"variables": {"theirs": 1}})
    with pytest.raises(ConcurrentUpdateError, match="expected version 1, it is at version 2") as caught:
        store.update_state(EXEC, {"variables": {"mine": 1}}, expected_version=first.version)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    with pytest.raises(ConcurrentUpdateError):
        store.save_state(first.model_copy(update={"output": "stale"}))
    state = store.get_state(EXEC)
    assert state.variables == {"theirs": 1} and state.output is None and state.version == 2

    current = store.get_state(EXEC)
    saved = store.save_state(current.model_copy(update={"output": "fresh", "variables": {}}))
    assert saved.version == 3 and store.get_state(EXEC).variables == {}  # a whole-state save replaces


def test_losing_every_race_gives_up_after_the_bounded_retries(store: StateStore) -> None:
    started(store)
    rival = StateStore(TABLE, payload_bucket=BUCKET)
    impatient = StateStore(TABLE, payload_bucket=BUCKET, max_update_attempts=3)
    calls = 0

    def change(state: WorkflowState) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        rival.update_state(EXEC, {"variables": {f"rival{calls}": True}})  # always gets in first
        return {"variables": {"mine": True}}

    with pytest.raises(ConcurrentUpdateError, match="after 3 attempts"):
        impatient.update_state(EXEC, change)
    assert calls == 3
    state = store.get_state(EXEC)
    assert state.variables == {"rival1": True, "rival2": True, "rival3": True} and state.version == 4


def test_a_new_state_never_replaces_a_recorded_one(store: StateStore) -> None:
    started(store)
    with pytest.raises(ExecutionAlreadyExists, match="already recorded"):
        started(store)
    with pytest.raises(ExecutionNotFound):
        store.update_state("arn:nope", {"output": 1})


def test_invalid_updates_are_refused_with_the_reason(store: StateStore) -> None:
    started(store)
    with pytest.raises(InvalidStateUpdate, match="cannot update currentSteps, startTime"):
        store.update_state(EXEC, {"startTime": "2020-01-01T00:00:00Z", "currentSteps": ["x"]})
    with pytest.raises(InvalidStateUpdate, match="workflowId cannot be updated"):
        store.update_state(EXEC, lambda s: s.model_copy(update={"workflowId": "other"}))
    with pytest.raises(InvalidStateUpdate, match="status"):
        store.update_state(EXEC, {"status": "SLEEPING"})
    with pytest.raises(InvalidStateUpdate, match="merged"):
        store.update_state(EXEC, {"variables": ["not", "a", "mapping"]})
    store.update_state(EXEC, {"status": "SUCCEEDED"})
    with pytest.raises(InvalidStateUpdate, match="already ended SUCCEEDED"):
        store.update_state(EXEC, {"status": "RUNNING"})
    assert store.get_state(EXEC).version == 2


def test_an_update_that_changes_nothing_writes_nothing(store: StateStore) -> None:
    started(store, variables={"a": 1})
    with dynamodb_calls(store) as calls:
        state = store.update_state(EXEC, {"variables": {"a": 1}})
    assert state.version == 1 and calls == {"GetItem": 1}


# -- history and step records -------------------------------------------------------------------------------
def run_a_small_workflow(store: StateStore) -> None:
    store.start_execution(EXEC, "demo", "1", {"input": {"x": 1}}, "2026-11-25T10:00:00.000Z")
    store.step_started(EXEC, "fetch", step_name="Fetch", action="fetch-data")
    store.step_failed(EXEC, "fetch", {"type": "TransientError", "message": "503"})
    store.step_started(EXEC, "fetch", step_name="Fetch", action="fetch-data")  # the retry
    store.step_succeeded(EXEC, "fetch", {"rows": 3})
    store.record_step(EXEC, "route", step_name="route", step_type="decision", status="SUCCEEDED",
                      output={"branch": "big", "next": ["review"]})
    store.steps_skipped(EXEC, [{"stepId": "autoApprove", "stepName": "Auto approve"}])
    store.step_started(EXEC, "review", action="review")


def test_history_is_every_event_in_order(store: StateStore) -> None:
    run_a_small_workflow(store)
    store.finish_execution(EXEC, "demo", "SUCCEEDED", output={"done": True})
    history = store.get_execution_history(EXEC)
    assert [(e.type, e.stepId) for e in history] == [
        ("WORKFLOW_STARTED", None),
        ("STEP_STARTED", "fetch"), ("STEP_FAILED", "fetch"), ("STEP_STARTED", "fetch"), ("STEP_SUCCEEDED", "fetch"),
        ("STEP_SUCCEEDED", "route"), ("STEP_SKIPPED", "autoApprove"), ("STEP_STARTED", "review"),
        ("WORKFLOW_SUCCEEDED", None),
    ]
    assert [e.timestamp for e in history] == sorted(e.timestamp for e in history)
    assert len({e.eventId for e in history}) == len(history)
    assert history[2].error is not None and history[2].error.message == "503"
    assert history[4].output == {"rows": 3}
    assert history[0].details == {"workflowVersion": "1"}


def test_step_records_are_folded_from_the_history(store: StateStore) -> None:
    run_a_small_workflow(store)
    steps = {s.stepId: s for s in store.list_steps(EXEC)}
    fetch = steps["fetch"]
    assert (fetch.status, fetch.attempts, fetch.output, fetch.error) == ("SUCCEEDED", 2, {"rows": 3}, None)
    assert fetch.stepName == "Fetch" and fetch.action == "fetch-data"
    assert fetch.startedAt and fetch.endedAt and fetch.durationMs is not None
    assert fetch.durationMs == int((fetch.endedAt - fetch.startedAt).total_seconds() * 1000)
    route = steps["route"]
    assert (route.status, route.attempts, route.durationMs, route.stepType) == ("SUCCEEDED", 1, 0, "decision")
    skipped = steps["autoApprove"]
    assert (skipped.status, skipped.attempts, skipped.startedAt, skipped.stepName) == ("SKIPPED", 0, None,
                                                                                      "Auto approve")
    assert [s.stepId for s in store.list_steps(EXEC)] == ["fetch", "route", "review", "autoApprove"]
    state = store.get_state(EXEC)
    assert state.currentSteps == ["review"]
    assert state.completed_outputs() == {"fetch": {"output": {"rows": 3}},
                                         "route": {"output": {"branch": "big", "next": ["review"]}}}


def test_a_failed_workflow_fails_its_running_steps(store: StateStore) -> None:
    run_a_small_workflow(store)
    store.finish_execution(EXEC, "demo", "FAILED", error={"type": "Boom", "message": "bad"})
    review = {s.stepId: s for s in store.list_steps(EXEC)}["review"]
    assert review.status == "FAILED" and review.error is not None and review.error.type == "Boom"
    record = store.get_state(EXEC)
    assert record.status == "FAILED" and record.error is not None and record.error.message == "bad"
    assert record.currentSteps == []
    assert store.get_execution_history(EXEC)[-2].type == "WORKFLOW_FAILED"


def test_start_and_finish_are_safe_to_retry(store: StateStore) -> None:
    store.start_execution(EXEC, "demo", "1", {"x": 1}, "")
    store.start_execution(EXEC, "demo", "1", {"x": 2}, "")
    store.finish_execution(EXEC, "demo", "SUCCEEDED", output={"y": 1})
    again = store.finish_execution(EXEC, "demo", "SUCCEEDED", output={"y": 1})
    assert again.version == 2 and again.input == {"x": 1}
    assert [e.type for e in store.get_execution_history(EXEC)] == ["WORKFLOW_STARTED", "WORKFLOW_SUCCEEDED"]
    with pytest.raises(InvalidStateUpdate):
        store.finish_execution(EXEC, "demo", "FAILED")


def test_a_finish_without_a_recorded_start_still_records_the_end(store: StateStore) -> None:
    store.step_started(EXEC, "only")
    state = store.finish_execution(EXEC, "demo", "FAILED", error={"type": "States.Timeout", "message": ""})
    assert state.status == "FAILED" and state.version == 1 and state.endTime is not None
    assert {s.stepId: s.status for s in store.list_steps(EXEC)} == {"only": "FAILED"}
    assert {int(i["expiresAt"]["N"]) for i in items(store)} == {state.expiresAt}


def test_history_events_are_never_overwritten(store: StateStore) -> None:
    store.step_started(EXEC, "a")
    first = items(store)[0]
    with pytest.raises(store.client.exceptions.ConditionalCheckFailedException):
        store.client.put_item(TableName=TABLE, Item=first | {"type": {"S": "FORGED"}},
                              ConditionExpression="attribute_not_exists(SK)")


# -- writes per step transition ---------------------------------------------------------------------------
def test_a_step_transition_costs_one_write_now_and_one_ttl_stamp_at_the_end(store: StateStore) -> None:
    store.start_execution(EXEC, "demo", "1", {}, "")
    with dynamodb_calls(store) as calls:
        store.step_started(EXEC, "a", action="a")
    assert calls == {"PutItem": 1}
    with dynamodb_calls(store) as calls:
        store.step_succeeded(EXEC, "a", {"ok": True})
    assert calls == {"PutItem": 1}
    with dynamodb_calls(store) as calls:
        store.finish_execution(EXEC, "demo", "SUCCEEDED", output={})
    # record + WORKFLOW_SUCCEEDED in one transaction; then one TTL stamp per item of the run: the two step events
    # and WORKFLOW_STARTED (the new WORKFLOW_SUCCEEDED is written with its final TTL)
    assert calls["TransactWriteItems"] == 1
    assert calls["UpdateItem"] == 3
    assert "Scan" not in calls


# -- retention ----------------------------------------------------------------------------------------------
def test_every_item_of_a_finished_execution_expires_with_it(store: StateStore) -> None:
    run_a_small_workflow(store)
    checkpoint = store.create_checkpoint(EXEC)
    before = {i["SK"]["S"]: int(i["expiresAt"]["N"]) for i in items(store)}
    horizon = time.time() + (BACKSTOP_DAYS + RETENTION_DAYS) * 86_400
    assert all(abs(value - horizon) < 60 for value in before.values()), "running: the backstop TTL"

    state = store.finish_execution(EXEC, "demo", "SUCCEEDED", output={})
    assert state.endTime is not None and state.expiresAt is not None
    assert state.expiresAt == int(state.endTime.timestamp()) + RETENTION_DAYS * 86_400
    after = {i["SK"]["S"]: int(i["expiresAt"]["N"]) for i in items(store)}
    assert set(after) >= set(before) and set(after.values()) == {state.expiresAt}
    assert store.restore_from_checkpoint(checkpoint).status == "RUNNING"  # still there until the TTL


def test_a_late_event_after_the_finish_still_has_a_ttl(store: StateStore) -> None:
    started(store)
    store.finish_execution(EXEC, "demo", "SUCCEEDED")
    store.step_succeeded(EXEC, "straggler", {"late": True})  # e.g. a branch still running when another failed
    assert all("expiresAt" in item for item in items(store))


# -- checkpoints ------------------------------------------------------------------------------------------
def test_a_checkpoint_restores_the_state_as_it_was(store: StateStore) -> None:
    run_a_small_workflow(store)
    store.update_state(EXEC, {"variables": {"stage": 1}})
    checkpoint = store.create_checkpoint(EXEC)
    store.update_state(EXEC, {"variables": {"stage": 2}})
    store.step_succeeded(EXEC, "review", {"approved": True})

    restored = store.restore_from_checkpoint(checkpoint)
    assert restored.variables == {"stage": 1} and restored.version == 2
    assert restored.currentSteps == ["review"]
    assert set(restored.completed_outputs()) == {"fetch", "route"}
    assert {s.stepId: s.status for s in restored.steps}["review"] == "RUNNING"
    assert store.get_state(EXEC).variables == {"stage": 2}
    (info,) = store.list_checkpoints(EXEC)
    assert info.checkpointId == checkpoint and info.version == 2 and info.executionId == EXEC
    assert store.get_execution_history(EXEC)[-1].type == "STEP_SUCCEEDED"
    assert any(e.type == "CHECKPOINT_CREATED" and e.details["checkpointId"] == checkpoint
               for e in store.get_execution_history(EXEC))


def test_unknown_checkpoints_are_reported(store: StateStore) -> None:
    started(store)
    for bad in ("nonsense", f"{EXEC}#CKPT#", f"{EXEC}#CKPT#2026-01-01T00:00:00.000000Z#00000000"):
        with pytest.raises(CheckpointNotFound):
            store.restore_from_checkpoint(bad)
    with pytest.raises(ExecutionNotFound):
        store.create_checkpoint("arn:missing")


# -- payloads over the item limit -------------------------------------------------------------------------
def big(size: int, tag: str = "x") -> dict[str, str]:
    return {"blob": tag * size}


def test_large_payloads_go_to_s3_and_come_back_transparently(store: StateStore) -> None:
    store.start_execution(EXEC, "demo", "1", big(500_000), "")
    store.step_succeeded(EXEC, "huge", big(400_000, "y"))
    store.update_state(EXEC, {"output": big(200_000, "z"), "variables": {"small": 1}})
    record = next(i for i in items(store) if i["SK"]["S"] == "EXECUTION")
    assert "M" in record["inputJson"] and record["inputJson"]["M"]["s3Bucket"]["S"] == BUCKET
    assert "S" in record["outputJson"]  # fits next to a pointer
    state = store.get_state(EXEC)
    assert state.input == big(500_000) and state.output == big(200_000, "z") and state.variables == {"small": 1}
    assert state.steps[0].output == big(400_000, "y")
    objects = aws.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    assert len(objects) == 2 and all(o["Key"].startswith("executions/arn%3Aaws%3Astates") for o in objects)

    checkpoint = store.create_checkpoint(EXEC)  # a snapshot of ~1 MB: offloaded as well
    assert store.restore_from_checkpoint(checkpoint).steps[0].output == big(400_000, "y")

    store.delete_state(EXEC)
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=BUCKET)


def test_payloads_that_fit_alone_but_not_together_are_split(store: StateStore) -> None:
    half = MAX_INLINE_BYTES // 2 + 10_000
    started(store)
    store.update_state(EXEC, {"output": big(half, "o"), "variables": {"v": "w" * half}})
    record = next(i for i in items(store) if i["SK"]["S"] == "EXECUTION")
    assert sum("M" in record[a] for a in ("outputJson", "variablesJson")) == 1
    state = store.get_state(EXEC)
    assert state.output == big(half, "o") and state.variables == {"v": "w" * half}


def test_without_a_bucket_an_oversized_payload_is_refused_clearly(cloud: None) -> None:
    store = StateStore(TABLE)
    with pytest.raises(PayloadTooLarge, match="COAFI_PAYLOAD_BUCKET"):
        store.start_execution(EXEC, "demo", "1", big(MAX_INLINE_BYTES + 1), "")
    assert store.get_execution(EXEC) is None


def test_the_bucket_comes_from_the_environment(cloud: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COAFI_PAYLOAD_BUCKET", BUCKET)
    assert StateStore(TABLE).payloads.bucket == BUCKET


def test_times_are_stored_in_one_sortable_format(store: StateStore) -> None:
    store.start_execution(EXEC, "demo", "1", {}, "2026-11-25T12:00:00+02:00")
    record = next(i for i in items(store) if i["SK"]["S"] == "EXECUTION")
    assert record["startTime"]["S"] == "2026-11-25T10:00:00.000Z"
    assert record["idxStart"]["S"] == f"2026-11-25T10:00:00.000Z#{EXEC}"
    assert store.get_state(EXEC).startTime == datetime(2026, 11, 25, 10, tzinfo=UTC)
