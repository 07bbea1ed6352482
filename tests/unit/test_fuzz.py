"""Hypothesis fuzzing of the definition loader and the compiler.

- loader: arbitrary JSON-like documents, and valid definitions mutated at random: ``validate_definition``
  returns a definition or raises ``DefinitionError``; nothing else escapes, and every problem names a file.
- compiler: generated valid definitions (random DAGs of tasks, waits, sub-workflows and decisions with nested
  branches and joins): ``compile_workflow`` raises nothing but ``DefinitionTooLarge``; state names are unique
  in the machine; every ``StartAt``/``Next``/``Default``/``Catch`` target is in the same ``States`` map; every
  state can be reached; every step has its state.

Kept under ten seconds: example counts are set per test, deadlines are off (the first examples import and
warm up pydantic).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coafi.compiler import compile_workflow
from coafi.compiler.asl import DefinitionTooLarge
from coafi.definitions import DefinitionError, WorkflowDefinition, definition_files, validate_definition
from coafi.definitions.loader import parse_document

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DOCUMENTS = [
    parse_document(p)
    for p in definition_files([REPO / "statemachines", REPO / "tests" / "fixtures" / "project" / "statemachines"])
]
EXTERNAL_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:partner-scoring"
FIELD_NAMES = [
    "id", "name", "version", "description", "steps", "triggers", "policies", "logLevel", "alarms", "type",
    "action", "parameters", "dependencies", "retryPolicy", "timeoutSeconds", "maxAttempts", "intervalSeconds",
    "backoffRate", "maxDelaySeconds", "jitter", "retryOn", "seconds", "until", "choices", "default", "condition",
    "next", "fact", "path", "operator", "value", "all", "any", "not", "source", "detailType", "detail", "cron",
    "rate", "timezone", "enabled", "periodMinutes", "evaluationPeriods", "datapointsToAlarm",
    "failedExecutions", "functionErrors",
]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_validation(data: Any, actions: set[str] | None = None) -> WorkflowDefinition | None:
    """Validate; only DefinitionError may escape, and its problems must be usable."""
    try:
        return validate_definition(data, "fuzz.yaml", actions=actions)
    except DefinitionError as exc:
        assert exc.problems, "a DefinitionError without problems"
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            str(problem)
        exc.render()
        return None


# -- loader: arbitrary documents ---------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["task", "wait", "decision", "subworkflow", "event", "schedule", "manual", "$.x", "$",
                       "equal", "greaterThan", "input", "steps", "a", "b", "full", "ALL", "1", EXTERNAL_ARN,
                       "2026-01-01T00:00:00Z", "0 9 * * ? *", "5 minutes"])
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


@FUZZ
@given(documents)
def test_arbitrary_documents_raise_only_definition_errors(data: Any) -> None:
    check_validation(data)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"id": scalars, "name": scalars, "version": scalars},
        optional={"steps": st.lists(st.dictionaries(keys, documents, max_size=6), max_size=5),
                  "triggers": documents, "alarms": documents, "logLevel": scalars, "policies": documents},
    ),
    st.none() | st.sets(st.sampled_from(["a", "b", "echo"])),
)
def test_definition_shaped_documents_raise_only_definition_errors(data: dict[str, Any], actions: set[str] | None
                                                                  ) -> None:
    check_validation(data, actions)


# -- loader: mutated valid definitions ---------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_definitions(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(SAMPLE_DOCUMENTS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(document, path), path[-1]
        operation = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "swap-type", "rename"]))
        if operation == "replace":
            parent[last] = draw(documents)
        elif operation == "delete":
            del parent[last]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(documents)
        elif operation == "add":
            parent.insert(last, draw(documents))
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif operation == "swap-type":
            value = parent[last]
            parent[last] = [value] if not isinstance(value, list) else (value[0] if value else None)
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELD_NAMES))] = parent.pop(last)
    return document


@FUZZ
@given(mutated_definitions())
def test_mutated_valid_definitions_raise_only_definition_errors(data: Any) -> None:
    definition = check_validation(data)
    if definition is not None:  # a mutation can leave it valid: then it must compile
        check_compiled(definition)


def test_the_sample_documents_are_valid() -> None:
    assert SAMPLE_DOCUMENTS
    for document in SAMPLE_DOCUMENTS:
        assert check_validation(document) is not None


# -- compiler: generated valid definitions -----------------------------------------------------------------

conditions = st.recursive(
    st.builds(
        lambda fact, path, pair: {"fact": fact, "path": path, "operator": pair[0], "value": pair[1]},
        st.sampled_from(["input", "steps"]),
        st.sampled_from(["$", "$.amount", "$.customer.tier", "$.flags[0]", "$.a-b_c"]),
        st.sampled_from([("equal", "gold"), ("notEqual", None), ("equal", True), ("equal", 3),
                         ("greaterThan", 100), ("lessThanInclusive", 2.5), ("lessThan", -1),
                         ("greaterThanInclusive", 0)]),
    ),
    lambda inner: st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3))
    | st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3))
    | st.builds(lambda c: {"not": c}, inner),
    max_leaves=6,
)


@st.composite
def leaf_steps(draw: st.DrawFn, step_id: str, deps: list[str]) -> dict[str, Any]:
    """A task (local or external action, maybe with retries and a timeout), wait or sub-workflow step."""
    kind = draw(st.sampled_from(["task", "task", "task", "external", "wait", "subworkflow"]))
    step: dict[str, Any] = {"id": step_id, "dependencies": deps}
    if draw(st.booleans()):
        step["name"] = draw(st.text(max_size=30))
    if kind == "wait":
        step["type"] = "wait"
        step["parameters"] = draw(st.sampled_from([
            {"seconds": 0}, {"seconds": 3600}, {"seconds": "$.input.delay"}, {"until": "2030-01-01T00:00:00Z"},
            {"until": "$.input.at"},
        ]))
        return step
    if kind == "subworkflow":
        step.update(type="subworkflow", action=draw(st.sampled_from(["child", "other-flow"])))
    else:
        step["action"] = EXTERNAL_ARN if kind == "external" else draw(st.sampled_from(["echo", "store", "a_b"]))
        if draw(st.booleans()):
            step["parameters"] = {"k": draw(st.integers())}
    if draw(st.booleans()):
        step["retryPolicy"] = {
            "maxAttempts": draw(st.integers(1, 5)), "jitter": draw(st.sampled_from(["full", "none"])),
            **draw(st.sampled_from([{}, {"retryOn": ["States.ALL"]}, {"retryOn": ["Boom"]}])),
        }
    if draw(st.booleans()):
        step["timeoutSeconds"] = draw(st.integers(1, 900))
    return step


@st.composite
def valid_definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid definition by construction: steps depend only on earlier ones; a decision's branch targets
    depend on it (and maybe on one step upstream of it), branch members on earlier members of their branch;
    later steps may join any finished steps. Decisions nest: a branch member may itself be a decision."""
    size = draw(st.integers(min_value=1, max_value=30))
    steps: list[dict[str, Any]] = []
    plain: list[str] = []  # steps others may depend on
    upstream: dict[str, set[str]] = {}

    def add(step: dict[str, Any]) -> str:
        steps.append(step)
        upstream[step["id"]] = set(step["dependencies"]).union(*(upstream[d] for d in step["dependencies"]))
        return str(step["id"])

    def some(pool: list[str], most: int) -> list[str]:
        if not pool:
            return []
        return draw(st.lists(st.sampled_from(pool), max_size=most, unique=True))

    def decision(deps: list[str], budget: int) -> list[str]:
        """A decision and its branches; returns the branch members (which later steps may depend on)."""
        d = add({"id": f"d{len(steps)}", "type": "decision", "dependencies": deps, "parameters": {}})
        decision_step = steps[-1]
        members_all: list[str] = []
        branch_targets: list[list[str]] = []
        for _ in range(draw(st.integers(1, 3))):
            extra = some(sorted(upstream[d]), 1)
            target = add(draw(leaf_steps(f"{d}b{len(steps)}", [d, *extra])))
            members = [target]
            for _ in range(draw(st.integers(0, 2))):
                if budget > 4 and draw(st.integers(0, 4)) == 0:  # a nested decision inside the branch
                    members += decision([draw(st.sampled_from(members))], budget // 2)
                else:
                    members.append(add(draw(leaf_steps(f"{d}m{len(steps)}", [draw(st.sampled_from(members))]))))
            members_all += members
            branch_targets.append([target])
        default = branch_targets.pop() if draw(st.booleans()) or len(branch_targets) > 1 else []
        choices = branch_targets or [default]
        decision_step["parameters"] = {
            "choices": [{"condition": draw(conditions), "next": t} for t in choices],
            "default": default if branch_targets else [],
        }
        return members_all

    while len(steps) < size:
        if size - len(steps) >= 3 and draw(st.integers(0, 3)) == 0:
            plain += decision(some(plain, 2), size - len(steps))
        else:
            plain.append(add(draw(leaf_steps(f"t{len(steps)}", some(plain, 3)))))
    order = draw(st.permutations(range(len(steps))))  # dependencies may point forward in the file
    return {"id": "fuzz", "name": "Fuzz", "version": "1", "steps": [steps[i] for i in order]}


def _state_maps(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every {StartAt, States} object of the machine, nested Parallel branches included."""
    yield node
    for state in node["States"].values():
        for branch in state.get("Branches", []):
            yield from _state_maps(branch)


def _targets(state: Mapping[str, Any]) -> list[str]:
    found = [state.get("Next"), state.get("Default")]
    found += [rule.get("Next") for rule in state.get("Choices", [])]
    found += [catcher.get("Next") for catcher in state.get("Catch", [])]
    return [t for t in found if t is not None]


def check_compiled(definition: WorkflowDefinition) -> None:
    try:
        compiled = compile_workflow(definition)
    except DefinitionTooLarge:
        return
    machine = compiled.asl
    json.dumps(machine)  # plain JSON data
    names: list[str] = []
    for graph in _state_maps(machine):
        states = graph["States"]
        assert graph["StartAt"] in states, f"StartAt {graph['StartAt']} is not in its States"
        names += list(states)
        for name, state in states.items():
            for target in _targets(state):
                assert target in states, f"{name} -> {target}: not in the same States map"
            terminal = state["Type"] in ("Choice", "Succeed", "Fail") or state.get("End") is True
            assert terminal or "Next" in state, f"{name} has neither Next nor End"
        reached: set[str] = set()
        todo = [graph["StartAt"]]
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo.extend(_targets(states[name]))
        assert reached == set(states), f"unreachable states: {sorted(set(states) - reached)}"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"state names used twice: {duplicates}"
    assert {s.id for s in definition.steps} <= set(names)
    assert all(len(n) <= 80 for n in names)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_definitions())
def test_generated_valid_definitions_compile_to_well_formed_machines(data: dict[str, Any]) -> None:
    definition = validate_definition(data, "fuzz.yaml", actions=None)  # the generator makes valid ones only
    check_compiled(definition)
