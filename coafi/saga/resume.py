"""Restart a failed execution from where it failed, where Step Functions' RedriveExecution is missing
(``coafi redrive EXECUTION --restart``; coafi.saga.redrive).

The restart is a new execution of the same state machine with the same input, named ``<name>-redrive-<n>``. Before
it starts, its execution record is written with ``metadata.redriveOf`` = the failed execution (``coafi.start``
then finds the record and leaves it). When an action of the new execution is about to run, its ``@action``
wrapper asks :func:`reused_output`: if the failed execution recorded that step SUCCEEDED and no compensation of it
ran, the recorded output is reused (recorded as the step's result, with STEP_STARTED and STEP_SUCCEEDED) and the
action does not run again. Steps that failed, did not run, or were undone by a compensation run again; so do the
steps that run no COAFI code (waits, sub-workflows, external Lambdas) and schedule steps.

Cost: executions whose name holds ``-redrive-`` pay one GetItem (the record) and one Query (the failed
execution's history) per action step; every other execution pays nothing (the name is checked first).
"""

from __future__ import annotations

from typing import Any

from coafi.state.store import StateStore

REDRIVE_MARK = "-redrive-"
METADATA_KEY = "redriveOf"
COMPENSATION_SUFFIX = ".compensate"
_MISSING = object()


def execution_arn_for(state_machine_arn: str, name: str) -> str:
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def prepare_restart(store: StateStore, failed_execution: str, new_execution: str, *, workflow_id: str,
                    workflow_version: str, raw_input: Any, start_time: str) -> None:
    """Write the new execution's record (as ``coafi.start`` would) with ``metadata.redriveOf``."""
    from coafi.runtime.state_ops import normalise_input

    workflow_input, trigger = normalise_input(raw_input)
    store.start_execution(new_execution, workflow_id, workflow_version,
                          {"input": workflow_input, "trigger": {**trigger, "redriveOf": failed_execution}},
                          start_time)
    store.update_state(new_execution, {"metadata": {METADATA_KEY: failed_execution}})


def reused_output(store: StateStore, execution_id: str, step_id: str) -> Any:
    """The output to reuse for ``step_id`` of a restarted execution, or ``_MISSING`` (run the action)."""
    if REDRIVE_MARK not in execution_id.rpartition(":")[2] or step_id.endswith(COMPENSATION_SUFFIX):
        return _MISSING
    record = store.get_execution(execution_id)
    previous = record.metadata.get(METADATA_KEY) if record is not None else None
    if not isinstance(previous, str) or not previous:
        return _MISSING
    steps = {s.stepId: s for s in store.list_steps(previous)}
    step = steps.get(step_id)
    if step is None or step.status != "SUCCEEDED" or step_id + COMPENSATION_SUFFIX in steps:
        return _MISSING
    return step.output


def is_missing(value: Any) -> bool:
    return value is _MISSING
