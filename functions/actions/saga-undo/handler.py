"""The compensation of the order saga sample: undoes one completed step (``event.compensation``).

It fails with ``UndoFailed`` when the workflow input names the compensated step in ``failUndoOf``, so a test
can show that a failing compensation is recorded and the others still run."""

from __future__ import annotations

from typing import Any

from coafi.errors import PermanentError
from coafi.runtime import StepEvent, action


class UndoFailed(PermanentError):
    """The input asked this compensation to fail (``failUndoOf``)."""


@action
def handler(event: StepEvent) -> dict[str, Any]:
    if event.compensation is None:
        raise UndoFailed("saga-undo runs as a compensation only (the step event has no 'compensation')")
    undone = str(event.compensation.get("stepId"))
    data = event.input if isinstance(event.input, dict) else {}
    if data.get("failUndoOf") == undone:
        raise UndoFailed(f"could not undo step '{undone}' (input.failUndoOf)")
    return {"undone": undone, "of": event.compensation.get("output"),
            "because": (event.compensation.get("error") or {}).get("type")}
