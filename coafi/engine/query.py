"""``queryWorkflow``: answers about a running or finished execution from its recorded state, read-only.

Answerable names (dot paths; a number selects a list item):

| name | answer |
|---|---|
| ``status``, ``workflowId``, ``workflowVersion``, ``startTime``, ``endTime``, ``updateTime`` | that field |
| ``currentSteps`` | ids of the steps running now |
| ``input[.<path>]``, ``output[.<path>]``, ``error[.<path>]`` | the workflow input / result / error, or a part of it |
| ``trigger[.<path>]`` | how it was started (``type``: direct, event, subworkflow; an event's id, source, ...) |
| ``variables[.<path>]``, ``metadata[.<path>]`` | the execution's variables / metadata, or one of them |
| ``steps`` | ``{stepId: status}`` of every recorded step |
| ``steps.<stepId>`` | that step's record (status, times, attempts, output, error) |
| ``steps.<stepId>.<field>[.<path>]`` | a field of it, e.g. ``steps.generateContent.output.contentId`` |
| ``state`` | the whole recorded state |
"""

from __future__ import annotations

from typing import Any

from coafi.engine.errors import InvalidQuery
from coafi.state.models import WorkflowState

SCALARS = ("status", "workflowId", "workflowVersion", "startTime", "endTime", "updateTime", "version",
           "executionId", "currentSteps")
DOCUMENTS = ("input", "trigger", "output", "error", "variables", "metadata")
ANSWERABLE = (*SCALARS, *(f"{d}[.<path>]" for d in DOCUMENTS), "steps", "steps.<stepId>[.<field>[.<path>]]",
              "state")


def answer(state: WorkflowState, name: str) -> Any:
    """The value ``name`` asks for (JSON-compatible); ``InvalidQuery`` names what is answerable."""
    parts = [p for p in name.strip().split(".")]
    if not name.strip() or any(p == "" for p in parts):
        raise InvalidQuery(f"query name {name!r} is empty or has an empty path part; answerable: "
                           f"{', '.join(ANSWERABLE)}")
    head, rest = parts[0], parts[1:]
    document = state.model_dump(mode="json")
    recorded = document.get("input")
    if isinstance(recorded, dict) and set(recorded) == {"input", "trigger"}:  # how coafi.start records it
        document["input"], document["trigger"] = recorded["input"], recorded["trigger"]
    else:
        document["trigger"] = None
    if head == "state" and not rest:
        return document
    if head in SCALARS:
        if rest:
            raise InvalidQuery(f"'{head}' has no parts to select ({name!r})")
        return document[head]
    if head in DOCUMENTS:
        return _select(document[head], rest, name)
    if head == "steps":
        steps = {step["stepId"]: step for step in document["steps"]}
        if not rest:
            return {step_id: step["status"] for step_id, step in steps.items()}
        if rest[0] not in steps:
            known = ", ".join(steps) or "none yet"
            raise InvalidQuery(f"execution has no record of step '{rest[0]}' (recorded steps: {known})")
        return _select(steps[rest[0]], rest[1:], name)
    raise InvalidQuery(f"cannot answer {name!r}: '{head}' is not a query name; answerable: {', '.join(ANSWERABLE)}")


def _select(value: Any, path: list[str], name: str) -> Any:
    walked: list[str] = []
    for part in path:
        walked.append(part)
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join(walked)
            raise InvalidQuery(f"query {name!r}: nothing at '{where}' in the recorded state")
    return value
