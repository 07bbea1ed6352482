"""find_executions: by workflow, status and start time through the indexes, paginated, never a scan."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from coafi.state import ExecutionSummary, InvalidNextToken, StateStore, WorkflowState
from tests.unit.test_state_store import cloud, dynamodb_calls, store  # noqa: F401 - fixtures

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
#: (workflow, status) per execution; execution i started at T0 + i minutes.
PLAN = [("orders", "SUCCEEDED"), ("orders", "FAILED"), ("billing", "RUNNING"), ("orders", "RUNNING"),
        ("billing", "SUCCEEDED"), ("orders", "SUCCEEDED"), ("billing", "FAILED"), ("orders", "SUCCEEDED"),
        ("reports", "ABORTED"), ("orders", "RUNNING"), ("billing", "SUCCEEDED"), ("orders", "TIMED_OUT")]


def execution_id(i: int) -> str:
    return f"arn:aws:states:us-east-1:123456789012:execution:wf:{i:03d}"


@pytest.fixture
def recorded(store: StateStore) -> StateStore:  # noqa: F811 - the fixture of the same name
    for i, (workflow, status) in enumerate(PLAN):
        store.save_state(WorkflowState(executionId=execution_id(i), workflowId=workflow,
                                       startTime=T0 + timedelta(minutes=i)))
        if status != "RUNNING":
            store.update_state(execution_id(i), {"status": status})
    return store


def expected(workflow: str | None = None, statuses: set[str] | None = None, after: int = 0,
             before: int = len(PLAN)) -> list[str]:
    """Execution ids matching, newest first."""
    return [execution_id(i) for i in reversed(range(after, before))
            if (workflow is None or PLAN[i][0] == workflow) and (statuses is None or PLAN[i][1] in statuses)]


def ids(executions: list[ExecutionSummary]) -> list[str]:
    return [e.executionId for e in executions]


def all_pages(state_store: StateStore, limit: int, **filters: object) -> list[str]:
    found: list[str] = []
    token = None
    for _ in range(100):
        page = state_store.find_executions(limit=limit, next_token=token, **filters)  # type: ignore[arg-type]
        assert len(page.executions) <= limit
        found += ids(page.executions)
        token = page.next_token
        if token is None:
            return found
    raise AssertionError("pagination never ended")


@pytest.mark.parametrize(("filters", "workflow", "statuses"), [
    ({"workflow_id": "orders"}, "orders", None),
    ({"workflow_id": "orders", "status": "SUCCEEDED"}, "orders", {"SUCCEEDED"}),
    ({"status": "RUNNING"}, None, {"RUNNING"}),
    ({"status": ["FAILED", "ABORTED"]}, None, {"FAILED", "ABORTED"}),
    ({"workflow_id": "orders", "status": ["RUNNING", "TIMED_OUT"]}, "orders", {"RUNNING", "TIMED_OUT"}),
    ({}, None, None),
])
def test_filters_select_the_matching_executions_newest_first(
    recorded: StateStore, filters: dict[str, object], workflow: str | None, statuses: set[str] | None,
) -> None:
    want = expected(workflow, statuses)
    assert want, "the plan has matches for every filter"
    assert ids(recorded.find_executions(**filters).executions) == want  # type: ignore[arg-type]
    oldest_first = recorded.find_executions(newest_first=False, **filters)  # type: ignore[arg-type]
    assert ids(oldest_first.executions) == want[::-1]
    for limit in (1, 2, 5):
        assert all_pages(recorded, limit, **filters) == want


def test_a_start_time_range_is_half_open(recorded: StateStore) -> None:
    after, before = T0 + timedelta(minutes=3), T0 + timedelta(minutes=9)
    page = recorded.find_executions(workflow_id="orders", start_after=after, start_before=before)
    assert ids(page.executions) == expected("orders", after=3, before=9)
    assert ids(recorded.find_executions(start_after=after.isoformat()).executions) == expected(after=3)
    assert ids(recorded.find_executions(start_before="2026-11-01T08:02:00Z").executions) == expected(before=2)
    assert all_pages(recorded, 2, status="SUCCEEDED", start_after=after, start_before=before) == \
        expected(statuses={"SUCCEEDED"}, after=3, before=9)
    with pytest.raises(ValueError, match="must be before"):
        recorded.find_executions(start_after=before, start_before=after)


def test_summaries_carry_what_a_listing_shows(recorded: StateStore) -> None:
    (first,) = recorded.find_executions(workflow_id="reports").executions
    assert first.workflowId == "reports" and first.status == "ABORTED"
    assert first.startTime == T0 + timedelta(minutes=8) and first.endTime is not None


def test_a_status_change_moves_the_execution_between_listings(recorded: StateStore) -> None:
    running = ids(recorded.find_executions(workflow_id="billing", status="RUNNING").executions)
    assert running == [execution_id(2)]
    recorded.finish_execution(execution_id(2), "billing", "SUCCEEDED", output={})
    assert recorded.find_executions(workflow_id="billing", status="RUNNING").executions == []
    assert execution_id(2) in ids(recorded.find_executions(status="SUCCEEDED").executions)


def test_only_index_queries_are_used(recorded: StateStore) -> None:
    with dynamodb_calls(recorded) as calls:
        all_pages(recorded, 3)
        all_pages(recorded, 3, workflow_id="orders", status="SUCCEEDED")
    assert set(calls) == {"Query"}


def test_tokens_belong_to_their_query(recorded: StateStore) -> None:
    token = recorded.find_executions(workflow_id="orders", limit=2).next_token
    assert token is not None
    with pytest.raises(InvalidNextToken, match="same filters"):
        recorded.find_executions(workflow_id="billing", limit=2, next_token=token)
    for garbage in ("", "not-base64!", "e30", "eyJxIjoxfQ"):
        with pytest.raises(InvalidNextToken):
            recorded.find_executions(workflow_id="orders", next_token=garbage or "x")


def test_bad_arguments_are_refused(recorded: StateStore) -> None:
    with pytest.raises(ValueError, match="unknown status"):
        recorded.find_executions(status="DONE")
    for limit in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            recorded.find_executions(limit=limit)


def test_pages_never_repeat_or_skip_with_many_statuses(store: StateStore) -> None:  # noqa: F811
    statuses = itertools.cycle(["RUNNING", "SUCCEEDED", "FAILED"])
    made = []
    for i in range(23):
        eid = execution_id(100 + i)
        store.save_state(WorkflowState(executionId=eid, workflowId="bulk", startTime=T0 + timedelta(seconds=i)))
        status = next(statuses)
        if status != "RUNNING":
            store.update_state(eid, {"status": status})
        made.append(eid)
    assert all_pages(store, 4) == made[::-1]
    assert all_pages(store, 4, newest_first=False) == made
