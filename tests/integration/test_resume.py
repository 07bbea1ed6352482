"""``coafi redrive --restart`` where RedriveExecution is missing (moto, LocalStack): the new execution resumes from
the failure - actions that succeeded and were not compensated are not run again, their outputs are reused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi.definitions import validate_definition
from coafi.runtime import StepEvent, action
from coafi.saga.redrive import redrive_execution
from coafi.state import StateStore
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import TABLE

RAN: list[str] = []
FIXED = {"flaky": False}


@action
def counter(event: StepEvent) -> dict[str, Any]:
    RAN.append(event.context.stepId)
    return {"step": event.context.stepId, "run": len(RAN)}


class DownstreamDown(Exception):
    """The dependency the flaky step calls is down (until the test 'fixes' it)."""


@action
def flaky(event: StepEvent) -> dict[str, Any]:
    if not FIXED["flaky"]:
        raise DownstreamDown("partner API answered 503")
    return {"ok": True}


DEFINITION = {
    "id": "resumable", "name": "Resumable", "version": "1",
    "steps": [
        {"id": "reserve", "action": "counter", "compensate": "saga-undo"},
        {"id": "quote", "action": "counter", "dependencies": ["reserve"]},
        {"id": "book", "action": "flaky", "dependencies": ["quote"]},
        {"id": "confirm", "action": "counter", "dependencies": ["book"]},
    ],
}


@pytest.fixture(scope="module")
def cloud(repo_root: Path) -> Iterator[InProcessCloud]:
    definition = validate_definition(DEFINITION, "resumable.yaml")
    with InProcessCloud(repo_root, definitions=[definition],
                        extra_handlers={"counter": counter, "flaky": flaky}) as cloud:
        yield cloud


def test_a_restart_reuses_what_succeeded_and_was_not_undone(cloud: InProcessCloud) -> None:
    RAN.clear()
    FIXED["flaky"] = False
    failed = cloud.run("resumable", {"order": "o-1"})
    assert failed.status == "FAILED" and failed.error == "DownstreamDown"
    assert RAN == ["reserve", "quote"]
    assert failed.step("reserve.compensate").status == "SUCCEEDED"  # reserve was undone
    quote = failed.step("quote").output

    FIXED["flaky"] = True  # the fix
    RAN.clear()
    store = StateStore(TABLE)
    result = redrive_execution(failed.execution_arn, restart=True, store=store)  # moto: no RedriveExecution
    assert result.mode == "restarted" and result.redriveOf == failed.execution_arn
    again = cloud.wait(result.executionArn)
    assert again.status == "SUCCEEDED", again.cause
    assert RAN == ["reserve", "confirm"]  # reserve again (it was compensated); quote reused; book and confirm run
    assert again.step("quote").output == quote and again.step("quote").status == "SUCCEEDED"
    assert again.step("book").output == {"ok": True}
    record = store.get_execution(result.executionArn)
    assert record is not None and record.metadata["redriveOf"] == failed.execution_arn
    assert record.input["input"] == {"order": "o-1"}
    assert record.input["trigger"]["redriveOf"] == failed.execution_arn


def test_without_the_state_table_every_step_runs_again(cloud: InProcessCloud) -> None:
    RAN.clear()
    FIXED["flaky"] = False
    failed = cloud.run("resumable", {"order": "o-2"})
    FIXED["flaky"] = True
    RAN.clear()
    result = redrive_execution(failed.execution_arn, restart=True)
    assert cloud.wait(result.executionArn).status == "SUCCEEDED"
    assert RAN == ["reserve", "quote", "confirm"]


def test_an_execution_without_a_record_is_refused(cloud: InProcessCloud) -> None:
    from coafi.saga.redrive import RedriveError

    FIXED["flaky"] = False
    failed = cloud.run("resumable", {"order": "o-3"})
    with pytest.raises(RedriveError, match="cannot read the state table another-table"):
        redrive_execution(failed.execution_arn, restart=True, store=StateStore("another-table"))
    store = StateStore(TABLE)
    store.delete_state(failed.execution_arn)  # its record expired, say
    with pytest.raises(RedriveError, match="no record in the state table"):
        redrive_execution(failed.execution_arn, restart=True, store=store)
