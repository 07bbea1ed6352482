"""The compiler: what each step becomes in ASL, and that the layout keeps every dependency without making
independent steps wait for each other."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from coafi.compiler import ArnRef, CompiledWorkflow, compile_workflow, critical_path
from coafi.compiler.asl import LAMBDA_SERVICE_ERRORS, MERGE_PER_PASS, DefinitionTooLarge
from coafi.compiler.diagram import mermaid
from coafi.compiler.layout import Leaf, Node, Par, Region, Seq
from coafi.definitions import WorkflowDefinition, validate_definition
from coafi.definitions.graph import longest_chain
from coafi.definitions.models import TRANSIENT_ERRORS

EXTERNAL_ARN = "arn:aws:lambda:us-east-1:123456789012:function:partner-scoring"
DENSITIES = (0.03, 0.1, 0.25, 0.6)


# -- building definitions ----------------------------------------------------------------------------


def define(*steps: dict[str, Any], workflow_id: str = "wf") -> WorkflowDefinition:
    data = {"id": workflow_id, "name": "Workflow", "version": "1", "steps": list(steps)}
    return validate_definition(data, "wf.yaml", actions=None)


def compile_steps(*steps: dict[str, Any]) -> CompiledWorkflow:
    return compile_workflow(define(*steps))


def task(step_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "echo", "dependencies": list(deps), **fields}


def random_dag(rng: random.Random, size: int, density: float) -> list[dict[str, Any]]:
    """``size`` task steps; each depends on each earlier-created step with probability ``density``.
    The definition order is shuffled: dependencies may point forward in the file."""
    ids = [f"s{i}" if rng.random() < 0.7 else f"step-{i}_x" for i in range(size)]
    steps = [task(ids[i], *(ids[j] for j in range(i) if rng.random() < density)) for i in range(size)]
    rng.shuffle(steps)
    return steps


def random_condition(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = rng.random()
    if depth < 2 and kind < 0.15:
        return {"all": [random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 2 and kind < 0.3:
        return {"any": [random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 2 and kind < 0.4:
        return {"not": random_condition(rng, depth + 1)}
    path = rng.choice(["$.amount", "$.customer.tier", "$.flags[0]", "$"])
    operator, value = rng.choice([
        ("equal", "gold"), ("notEqual", "silver"), ("equal", True), ("equal", None), ("equal", 3),
        ("greaterThan", 100), ("lessThanInclusive", 2.5), ("greaterThanInclusive", 0), ("lessThan", -1),
    ])
    return {"fact": rng.choice(["input", "input", "steps"]), "path": path, "operator": operator, "value": value}


def random_decision_workflow(rng: random.Random, size: int) -> list[dict[str, Any]]:
    """Tasks and decisions (some nested, some with an empty default), branches of one to three steps,
    joins after them: always a valid definition."""
    steps: list[dict[str, Any]] = []
    plain: list[str] = []  # steps others may depend on (decisions only through their branch targets)
    upstream: dict[str, set[str]] = {}

    def add(step: dict[str, Any]) -> str:
        steps.append(step)
        upstream[step["id"]] = set(step["dependencies"]).union(*(upstream[d] for d in step["dependencies"]))
        return str(step["id"])

    while len(steps) < size:
        n = len(steps)
        if rng.random() < 0.3 and size - n >= 4:
            deps = rng.sample(plain, k=min(len(plain), rng.randint(0, 2)))
            d = f"d{n}"
            branches = rng.randint(1, 3)
            targets: list[list[str]] = []
            decision = {"id": d, "type": "decision", "dependencies": deps, "parameters": {}}
            add(decision)
            for b in range(branches):
                target_deps = [d, *rng.sample(sorted(upstream[d]), k=min(1, len(upstream[d])))]
                target = add(task(f"{d}b{b}", *target_deps))
                members = [target]
                for m in range(rng.randint(0, 2)):
                    members.append(add(task(f"{d}b{b}m{m}", rng.choice(members))))
                plain.extend(members)
                targets.append([target])
            default = targets.pop() if rng.random() < 0.7 else []
            decision["parameters"] = {
                "choices": [{"condition": random_condition(rng), "next": t} for t in targets] or
                           [{"condition": random_condition(rng), "next": default}],
                "default": default if targets else [],
            }
        else:
            plain.append(add(task(f"t{n}", *rng.sample(plain, k=min(len(plain), rng.randint(0, 3))))))
    return steps


def series_parallel(rng: random.Random, budget: int, counter: Iterator[int]) -> list[dict[str, Any]]:
    """A random series-parallel graph of about ``budget`` steps (series: every sink of the first part
    feeds every source of the second)."""
    if budget <= 1:
        return [task(f"n{next(counter)}")]
    left_size = rng.randint(1, budget - 1)
    left = series_parallel(rng, left_size, counter)
    right = series_parallel(rng, budget - left_size, counter)
    if rng.random() < 0.5:
        return left + right
    left_ids = {s["id"] for s in left}
    sinks = [s["id"] for s in left if not any(s["id"] in o["dependencies"] for o in left)]
    for step in right:
        if not set(step["dependencies"]) - left_ids and not step["dependencies"]:
            step["dependencies"] = list(sinks)
    return left + right


# -- reading compiled output ---------------------------------------------------------------------------


def state_maps(asl: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every ``States`` object of the machine, the nested ones of Parallel branches included."""
    yield asl["States"]
    for state in asl["States"].values():
        for branch in state.get("Branches", []):
            yield from state_maps(branch)


def all_states(asl: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for states in state_maps(asl):
        yield from states.items()


def find_state(compiled: CompiledWorkflow, name: str) -> dict[str, Any]:
    matches = [state for state_name, state in all_states(compiled.asl) if state_name == name]
    assert len(matches) == 1, f"{len(matches)} states named {name!r}"
    return matches[0]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def intrinsic_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def dependencies(definition: WorkflowDefinition) -> dict[str, list[str]]:
    return {s.id: list(s.dependencies) for s in definition.steps}


# -- checking a layout ---------------------------------------------------------------------------------


def steps_in(node: Node | None) -> list[str]:
    if node is None:
        return []
    if isinstance(node, Leaf):
        return [node.step]
    if isinstance(node, Seq):
        return [s for p in node.parts for s in steps_in(p)]
    if isinstance(node, Par):
        return [s for b in node.branches for s in steps_in(b)]
    return [node.decision, *(s for b in node.branches for s in steps_in(b))]


def finished_before(node: Node | None, done: frozenset[str], into: dict[str, frozenset[str]]) -> None:
    """For each step of ``node``: the steps certainly finished (or skipped) when it starts."""
    if node is None:
        return
    if isinstance(node, Leaf):
        into[node.step] = done
    elif isinstance(node, Seq):
        for part in node.parts:
            finished_before(part, done, into)
            done = done | set(steps_in(part))
    elif isinstance(node, Par):
        for branch in node.branches:
            finished_before(branch, done, into)
    else:
        into[node.decision] = done
        for region_branch in node.branches:
            finished_before(region_branch, done | {node.decision}, into)


def check_layout(compiled: CompiledWorkflow) -> None:
    deps = dependencies(compiled.definition)
    placed = steps_in(compiled.layout)
    assert sorted(placed) == sorted(deps), "every step is laid out exactly once"
    before: dict[str, frozenset[str]] = {}
    finished_before(compiled.layout, frozenset(), before)
    for step, step_deps in deps.items():
        missing = set(step_deps) - before[step]
        assert not missing, f"{step} may start before {sorted(missing)} finished"


def check_asl_order(compiled: CompiledWorkflow) -> None:
    """The same on the ASL itself: walk every state map in order; a step's state is entered only when its
    dependencies have finished on every path to it (a decision's record state marks the other branches'
    steps done: they are SKIPPED)."""
    deps = dependencies(compiled.definition)
    decisions = {s.id for s in compiled.definition.steps if s.type == "decision"}

    def successors(state: dict[str, Any]) -> list[str]:
        if state["Type"] == "Choice":
            return [c["Next"] for c in state["Choices"]] + [state["Default"]]
        return [state["Next"]] if "Next" in state else []

    def run(states: dict[str, Any], start: str, done: frozenset[str]) -> frozenset[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:  # depth-first post-order, reversed = topological
            if name in seen:
                return
            seen.add(name)
            for nxt in successors(states[name]):
                visit(nxt)
            order.append(name)

        visit(start)
        entered: dict[str, frozenset[str]] = {start: done}
        exits: list[frozenset[str]] = []
        for name in reversed(order):
            state, now = states[name], entered[name]
            if name in deps:
                missing = set(deps[name]) - now
                assert not missing, f"state {name} may be entered before {sorted(missing)} finished"
            if state["Type"] == "Parallel":
                after = set(now)
                for branch in state["Branches"]:
                    after |= run(branch["States"], branch["StartAt"], now)
                now = frozenset(after)
            payload = state.get("Parameters", {}).get("Payload", {})
            if payload.get("op") == "decide":
                now = now | {payload["stepId"]} | {s["stepId"] for s in payload["skipped"]}
            elif name in deps and name not in decisions:
                now = now | {name}
            for nxt in successors(state):
                entered[nxt] = entered[nxt] & now if nxt in entered else now
            if state.get("End") or state["Type"] in ("Fail", "Succeed"):
                exits.append(now)
        return frozenset.intersection(*exits)

    run_state = compiled.asl["States"]["coafi.run"]
    [body] = run_state["Branches"]
    finished = run(body["States"], body["StartAt"], frozenset())
    assert finished >= set(deps), f"not every step has finished at the end: {sorted(set(deps) - finished)}"


def check_names(compiled: CompiledWorkflow) -> None:
    names = [name for name, _ in all_states(compiled.asl)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"state names used twice: {duplicates}"
    too_long = [n for n in names if len(n) > 80]
    assert not too_long, f"state names longer than 80 characters: {too_long}"
    for states in state_maps(compiled.asl):
        for state in states.values():
            targets = [state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", []))]
            for target in filter(None, targets):
                assert target in states, f"{target} is not in the same States object"


def weighted_longest_chain(deps: Mapping[str, Sequence[str]], duration: Mapping[str, float]) -> float:
    finish: dict[str, float] = {}

    def end(step: str) -> float:
        if step not in finish:
            finish[step] = duration[step] + max((end(d) for d in deps[step]), default=0.0)
        return finish[step]

    return max(end(s) for s in deps)


# -- steps become states named by their ids ------------------------------------------------------------


def test_a_local_action_is_a_lambda_task_named_by_the_step_id() -> None:
    compiled = compile_steps(task("fetchOrder", action="generate-content", parameters={"limit": 3}))
    state = find_state(compiled, "fetchOrder")
    assert state["Type"] == "Task"
    assert state["Resource"] == "arn:aws:states:::lambda:invoke"
    assert state["Parameters"]["FunctionName"] == "${Action_generate_content}"
    assert state["Parameters"]["Payload"]["parameters"] == {"limit": 3}
    assert state["Parameters"]["Payload"]["context"]["stepId"] == "fetchOrder"
    assert state["ResultSelector"] == {"output.$": "$.Payload"}
    assert state["ResultPath"] == "$.steps.fetchOrder"
    assert compiled.substitutions["Action_generate_content"] == ArnRef("action", "generate-content")
    assert compiled.substitutions["StateFunctionArn"] == ArnRef("state-function")
    assert compiled.actions == ["generate-content"]
    assert compiled.external_functions == [] and compiled.subworkflows == []


def test_every_placeholder_in_the_asl_is_listed_in_substitutions() -> None:
    compiled = compile_steps(task("a", action="send_mail-v2"), task("b", "a"),
                             {"id": "c", "type": "subworkflow", "action": "child-flow", "dependencies": ["a"]})
    used = {m for text in strings(compiled.asl) for m in re.findall(r"\$\{([^}]+)\}", text)}
    assert used == set(compiled.substitutions) == {"StateFunctionArn", "Action_send_mail_v2", "Action_echo",
                                                   "Workflow_child_flow"}


def test_machine_frame_starts_records_and_catches() -> None:
    compiled = compile_steps(task("a"))
    states = compiled.asl["States"]
    assert compiled.asl["StartAt"] == "coafi.start"
    assert states["coafi.start"]["Next"] == "coafi.run"
    run = states["coafi.run"]
    assert run["Type"] == "Parallel" and len(run["Branches"]) == 1
    assert run["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "coafi.failed"}]
    assert run["Next"] == "coafi.succeeded" and states["coafi.succeeded"]["End"] is True
    assert states["coafi.failed"]["Next"] == "coafi.fail"
    assert run["Branches"][0]["StartAt"] == "a" and run["Branches"][0]["States"]["a"]["End"] is True


def test_retry_policy_becomes_a_retrier_after_the_lambda_service_retrier() -> None:
    policy = {"maxAttempts": 4, "intervalSeconds": 2, "backoffRate": 1.5, "maxDelaySeconds": 30, "jitter": "none",
              "retryOn": ["RateLimited", "UpstreamDown"]}
    state = find_state(compile_steps(task("a", retryPolicy=policy, timeoutSeconds=12)), "a")
    service, user = state["Retry"]
    assert service["ErrorEquals"] == LAMBDA_SERVICE_ERRORS
    assert user == {"ErrorEquals": ["RateLimited", "UpstreamDown"], "IntervalSeconds": 2, "MaxAttempts": 3,
                    "BackoffRate": 1.5, "JitterStrategy": "NONE", "MaxDelaySeconds": 30}
    assert state["TimeoutSeconds"] == 12


def test_retry_policy_defaults_retry_the_transient_errors_with_full_jitter() -> None:
    state = find_state(compile_steps(task("a", retryPolicy={})), "a")
    [retrier] = state["Retry"]  # the transient set covers the Lambda service errors: no second retrier
    assert retrier == {"ErrorEquals": list(TRANSIENT_ERRORS), "IntervalSeconds": 1, "MaxAttempts": 2,
                       "BackoffRate": 2.0, "JitterStrategy": "FULL"}
    assert set(LAMBDA_SERVICE_ERRORS) <= set(retrier["ErrorEquals"])
    assert "TimeoutSeconds" not in state


def test_retry_on_states_all_stands_alone() -> None:
    state = find_state(compile_steps(task("a", retryPolicy={"maxAttempts": 5, "retryOn": ["States.ALL"]})), "a")
    assert state["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 4,
                               "BackoffRate": 2.0, "JitterStrategy": "FULL"}]


def test_retry_on_overlapping_the_service_errors_does_not_repeat_them() -> None:
    state = find_state(compile_steps(task("a", retryPolicy={"retryOn": ["Lambda.ServiceException", "Boom"]})), "a")
    service, user = state["Retry"]
    assert "Lambda.ServiceException" not in service["ErrorEquals"]
    assert user["ErrorEquals"] == ["Lambda.ServiceException", "Boom"]
    error_names = [e for r in state["Retry"] for e in r["ErrorEquals"]]
    assert len(error_names) == len(set(error_names))


@pytest.mark.parametrize("policy", [None, {"maxAttempts": 1}])
def test_no_retry_policy_or_one_attempt_keeps_only_the_service_retrier(policy: dict[str, Any] | None) -> None:
    state = find_state(compile_steps(task("a", retryPolicy=policy)), "a")
    assert state["Retry"] == [{"ErrorEquals": LAMBDA_SERVICE_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
                               "BackoffRate": 2.0, "JitterStrategy": "FULL"}]


def test_external_lambda_is_inlined_listed_and_recorded_around() -> None:
    compiled = compile_steps(task("score", action=EXTERNAL_ARN, timeoutSeconds=5))
    state = find_state(compiled, "score")
    assert state["Parameters"]["FunctionName"] == EXTERNAL_ARN
    assert state["TimeoutSeconds"] == 5
    assert compiled.external_functions == [EXTERNAL_ARN]
    assert compiled.actions == [] and not any(k.startswith("Action_") for k in compiled.substitutions)
    started, finished = find_state(compiled, "score.started"), find_state(compiled, "score.finished")
    assert started["Next"] == "score" and state["Next"] == "score.finished"
    assert started["Parameters"]["Payload"]["status"] == "RUNNING"
    assert finished["Parameters"]["Payload"]["status"] == "SUCCEEDED"


def test_subworkflow_starts_the_child_machine_and_waits() -> None:
    compiled = compile_steps({"id": "child", "type": "subworkflow", "action": "content-generation",
                              "parameters": {"contentType": "summary"}, "timeoutSeconds": 600,
                              "retryPolicy": {"maxAttempts": 2, "retryOn": ["StepFunctions.ExecutionFailed"]}})
    state = find_state(compiled, "child")
    assert state["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert state["Parameters"]["StateMachineArn"] == "${Workflow_content_generation}"
    assert state["Parameters"]["Input"]["parameters"] == {"contentType": "summary"}
    assert state["ResultPath"] == "$.steps.child"
    assert state["TimeoutSeconds"] == 600
    assert [r["ErrorEquals"] for r in state["Retry"]] == [["StepFunctions.ExecutionLimitExceeded"],
                                                          ["StepFunctions.ExecutionFailed"]]
    assert compiled.substitutions["Workflow_content_generation"] == ArnRef("workflow", "content-generation")
    assert compiled.subworkflows == ["content-generation"]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"seconds": 30}, {"Seconds": 30}),
        ({"seconds": 0}, {"Seconds": 0}),
        ({"seconds": "$.input.delaySeconds"}, {"SecondsPath": "$.input.delaySeconds"}),
        ({"until": "2026-12-01T09:00:00Z"}, {"Timestamp": "2026-12-01T09:00:00Z"}),
        ({"until": "$.input.notBefore"}, {"TimestampPath": "$.input.notBefore"}),
    ],
)
def test_wait_forms(parameters: dict[str, Any], expected: dict[str, Any]) -> None:
    state = find_state(compile_steps({"id": "pause", "type": "wait", "parameters": parameters}), "pause")
    assert state["Type"] == "Wait"
    assert {k: v for k, v in state.items() if k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath")} == expected


# -- decisions -----------------------------------------------------------------------------------------


def decision_step(condition: dict[str, Any], step_id: str = "route") -> dict[str, Any]:
    return {"id": step_id, "type": "decision", "parameters": {"choices": [{"condition": condition, "next": "yes"}],
                                                               "default": "no"}}


def compiled_rule(condition: dict[str, Any]) -> dict[str, Any]:
    compiled = compile_steps(decision_step(condition), task("yes", "route"), task("no", "route"))
    choice = find_state(compiled, "route")
    [rule] = choice["Choices"]
    assert rule.pop("Next") == "route.choice-1"
    return dict(rule)


def test_decision_is_a_choice_named_by_the_step_id_with_a_default() -> None:
    compiled = compile_steps(task("intake"), {**decision_step({"fact": "input", "path": "$.amount",
                                                               "operator": "greaterThan", "value": 100}),
                                              "dependencies": ["intake"]},
                             task("yes", "route"), task("yesAgain", "yes"), task("no", "route"),
                             task("after", "yesAgain", "no"))
    choice = find_state(compiled, "route")
    assert choice["Type"] == "Choice"
    assert choice["Default"] == "route.default"
    assert [c["Next"] for c in choice["Choices"]] == ["route.choice-1"]
    taken, default = find_state(compiled, "route.choice-1"), find_state(compiled, "route.default")
    assert taken["Next"] == "yes" and default["Next"] == "no"
    assert taken["ResultPath"] == "$.steps.route"
    assert taken["Parameters"]["Payload"]["skipped"] == [{"stepId": "no", "stepName": "no", "stepType": "task"}]
    assert [s["stepId"] for s in default["Parameters"]["Payload"]["skipped"]] == ["yes", "yesAgain"]
    assert find_state(compiled, "yesAgain")["Next"] == "after" and find_state(compiled, "no")["Next"] == "after"
    assert isinstance(compiled.layout, Seq)
    assert compiled.layout.parts == [Leaf("intake"), Region("route", [Seq([Leaf("yes"), Leaf("yesAgain")]),
                                                                      Leaf("no")]), Leaf("after")]


def test_decision_with_an_empty_default_ends_its_region() -> None:
    """With nothing to run on the default branch, its record state ends the region; a step after the
    region (it also depends on a concurrent step, else it would be on the branch) runs either way."""
    route = {"id": "route", "type": "decision", "dependencies": ["a"], "parameters": {
        "choices": [{"condition": {"fact": "input", "path": "$.x", "operator": "equal", "value": 1},
                     "next": "extra"}]}}
    compiled = compile_steps(task("a"), route, task("extra", "route"), task("more", "extra"), task("other", "a"),
                             task("last", "more", "other"))
    assert compiled.layout == Seq([Leaf("a"), Par([Region("route", [Seq([Leaf("extra"), Leaf("more")]), None]),
                                                   Leaf("other")]), Leaf("last")])
    assert find_state(compiled, "route.default").get("End") is True
    assert find_state(compiled, "more").get("End") is True
    assert [s["stepId"] for s in find_state(compiled, "route.default")["Parameters"]["Payload"]["skipped"]] == [
        "extra", "more"]
    assert join_chain(compiled, "parallel.1")[-1][1]["Next"] == "last"
    check_asl_order(compiled)


def test_numeric_comparison_is_guarded_by_presence_and_type() -> None:
    rule = compiled_rule({"fact": "input", "path": "$.order.total", "operator": "greaterThanInclusive", "value": 50})
    assert rule == {"And": [{"Variable": "$.input.order.total", "IsPresent": True},
                            {"Variable": "$.input.order.total", "IsNumeric": True},
                            {"Variable": "$.input.order.total", "NumericGreaterThanEquals": 50}]}


@pytest.mark.parametrize(
    ("value", "type_test", "comparison"),
    [("gold", "IsString", "StringEquals"), (True, "IsBoolean", "BooleanEquals"), (7, "IsNumeric", "NumericEquals"),
     (2.5, "IsNumeric", "NumericEquals")],
)
def test_equality_is_typed(value: Any, type_test: str, comparison: str) -> None:
    rule = compiled_rule({"fact": "steps", "path": "$.score.output.tier", "operator": "equal", "value": value})
    variable = "$.steps.score.output.tier"
    typed = {"And": [{"Variable": variable, type_test: True}, {"Variable": variable, comparison: value}]}
    assert rule == {"And": [{"Variable": variable, "IsPresent": True}, typed]}


def test_equal_null_and_not_equal() -> None:
    assert compiled_rule({"fact": "input", "path": "$.x", "operator": "equal", "value": None}) == {
        "And": [{"Variable": "$.input.x", "IsPresent": True}, {"Variable": "$.input.x", "IsNull": True}]}
    not_equal = compiled_rule({"fact": "input", "path": "$.x", "operator": "notEqual", "value": "a"})
    assert list(not_equal) == ["Not"] and not_equal["Not"]["And"][0] == {"Variable": "$.input.x", "IsPresent": True}


def test_all_any_not_compose() -> None:
    fact = {"fact": "input", "path": "$.a", "operator": "lessThan", "value": 3}
    single = compiled_rule({"all": [fact]})
    assert single == compiled_rule(fact)  # one condition needs no And
    rule = compiled_rule({"any": [{"all": [fact, fact]}, {"not": fact}]})
    assert list(rule) == ["Or"]
    first, second = rule["Or"]
    assert list(first) == ["And"] and len(first["And"]) == 2
    assert list(second) == ["Not"]


def test_nested_decisions_compile_and_keep_order() -> None:
    cond = {"fact": "input", "path": "$.x", "operator": "equal", "value": 1}
    compiled = compile_steps(
        {"id": "outer", "type": "decision", "parameters": {"choices": [{"condition": cond, "next": "inner"}],
                                                           "default": "plain"}},
        {"id": "inner", "type": "decision", "dependencies": ["outer"],
         "parameters": {"choices": [{"condition": cond, "next": "deep"}], "default": "shallow"}},
        task("deep", "inner"), task("shallow", "inner"), task("plain", "outer"),
        task("join", "deep", "shallow", "plain"),
    )
    assert compiled.layout == Seq([Region("outer", [Region("inner", [Leaf("deep"), Leaf("shallow")]), Leaf("plain")]),
                                   Leaf("join")])
    skipped = find_state(compiled, "outer.default")["Parameters"]["Payload"]["skipped"]
    assert {s["stepId"] for s in skipped} == {"inner", "deep", "shallow"}
    check_asl_order(compiled)
    check_names(compiled)


# -- layout: every dependency kept, no needless waiting ------------------------------------------------


def test_the_checkers_catch_a_broken_layout_and_a_broken_machine() -> None:
    compiled = compile_steps(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
    good_layout = compiled.layout
    compiled.layout = Seq([Leaf("a"), Par([Leaf("b"), Seq([Leaf("c"), Leaf("d")])])])  # d may beat b
    with pytest.raises(AssertionError, match="d may start before"):
        check_layout(compiled)
    compiled.layout = good_layout
    body = compiled.asl["States"]["coafi.run"]["Branches"][0]["States"]
    body["a"]["Next"], body["d"]["Next"] = "d", "parallel.1"  # run d before the fork
    del body["d"]["End"]
    body["parallel.1.join"]["End"] = True
    del body["parallel.1.join"]["Next"]
    with pytest.raises(AssertionError, match="state d may be entered before"):
        check_asl_order(compiled)


def test_independent_steps_run_in_parallel() -> None:
    compiled = compile_steps(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"), task("e"))
    assert compiled.layout == Par([Seq([Leaf("a"), Par([Leaf("b"), Leaf("c")]), Leaf("d")]), Leaf("e")])
    fork = find_state(compiled, "parallel.1")
    assert fork["Type"] == "Parallel" and len(fork["Branches"]) == 2
    assert critical_path(compiled.layout) == 3


def test_the_n_shape_never_exceeds_the_longest_chain() -> None:
    compiled = compile_steps(task("a"), task("b"), task("c", "a", "b"), task("d", "b"))
    check_layout(compiled)
    assert critical_path(compiled.layout) == 2


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("seed", range(40))
def test_random_dags_keep_dependencies_and_the_longest_chain(seed: int, density: float) -> None:
    rng = random.Random(seed * 1000 + int(density * 100))
    steps = random_dag(rng, rng.randint(2, 60), density)
    compiled = compile_workflow(define(*steps))
    deps = dependencies(compiled.definition)
    assert critical_path(compiled.layout) == longest_chain(deps)
    check_layout(compiled)
    check_asl_order(compiled)
    check_names(compiled)


@pytest.mark.parametrize("seed", range(40))
def test_random_decision_workflows_keep_dependencies(seed: int) -> None:
    rng = random.Random(seed)
    compiled = compile_workflow(define(*random_decision_workflow(rng, rng.randint(4, 40))))
    check_layout(compiled)
    check_asl_order(compiled)
    check_names(compiled)
    choices = [name for name, state in all_states(compiled.asl) if state["Type"] == "Choice"]
    decisions = [s.id for s in compiled.definition.steps if s.type == "decision"]
    assert sorted(choices) == sorted([*decisions, "coafi.fail"])


def test_diamond_with_unequal_durations_waits_for_nothing_extra() -> None:
    compiled = compile_steps(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
    deps = dependencies(compiled.definition)
    rng = random.Random(7)
    for _ in range(50):
        duration = {s: rng.uniform(0.1, 10.0) for s in deps}
        assert critical_path(compiled.layout, duration) == pytest.approx(weighted_longest_chain(deps, duration))


@pytest.mark.parametrize("seed", range(30))
def test_series_parallel_graphs_are_laid_out_exactly(seed: int) -> None:
    rng = random.Random(seed)
    steps = series_parallel(rng, rng.randint(2, 40), iter(range(10_000)))
    compiled = compile_workflow(define(*steps))
    deps = dependencies(compiled.definition)
    check_layout(compiled)
    for _ in range(5):
        duration = {s: rng.uniform(0.1, 10.0) for s in deps}
        assert critical_path(compiled.layout, duration) == pytest.approx(weighted_longest_chain(deps, duration))


# -- Parallel joins and ASL limits ---------------------------------------------------------------------


def join_chain(compiled: CompiledWorkflow, fork_name: str) -> list[tuple[str, dict[str, Any]]]:
    states = next(s for s in state_maps(compiled.asl) if fork_name in s)
    chain = []
    name = states[fork_name]["Next"]
    while name is not None and name.startswith(f"{fork_name}.join"):
        chain.append((name, states[name]))
        name = states[name].get("Next")
    return chain


@pytest.mark.parametrize(("branches", "joins"), [(2, 1), (8, 1), (9, 2), (15, 2), (16, 3), (30, 5)])
def test_wide_parallel_joins_are_chained_and_merge_every_branch(branches: int, joins: int) -> None:
    wide = [f"w{i}" for i in range(branches)]
    compiled = compile_steps(*(task(w) for w in wide), task("after", *wide))
    fork = find_state(compiled, "parallel.1")
    assert len(fork["Branches"]) == branches
    chain = join_chain(compiled, "parallel.1")
    assert [name for name, _ in chain] == ["parallel.1.join", *(f"parallel.1.join-{i}" for i in range(2, joins + 1))]
    merged: list[int] = []
    for i, (_, state) in enumerate(chain):
        steps_expr = state["Parameters"]["steps.$"]
        merged += [int(n) for n in re.findall(r"ArrayGetItem\(\$\.fork\.branches, (\d+)\)", steps_expr)]
        assert intrinsic_depth(steps_expr) <= 10
        assert steps_expr.count("ArrayGetItem") <= MERGE_PER_PASS
        if i > 0:
            assert steps_expr.startswith("States.JsonMerge(") and "$.steps," in steps_expr
        assert ("fork.$" in state["Parameters"]) == (i < len(chain) - 1)  # kept until the last join
    assert merged == list(range(branches))
    assert chain[-1][1]["Next"] == "after"


@pytest.mark.parametrize("seed", range(5))
def test_every_intrinsic_nests_at_most_ten_deep(seed: int) -> None:
    rng = random.Random(seed)
    compiled = compile_workflow(define(*random_dag(rng, 80, 0.01)))
    deepest = max(intrinsic_depth(text) for text in strings(compiled.asl))
    assert 0 < deepest <= 10


def test_state_names_are_unique_and_short_even_with_long_and_tricky_ids() -> None:
    long_id = "x" * 64
    cond = {"fact": "input", "path": "$.x", "operator": "equal", "value": 1}
    choices = [{"condition": cond, "next": f"b{i}"} for i in range(11)]
    compiled = compile_steps(
        {"id": long_id, "type": "decision", "parameters": {"choices": choices, "default": "coafi"}},
        *(task(f"b{i}", long_id) for i in range(11)),
        {"id": "coafi", "type": "wait", "parameters": {"seconds": 1}, "dependencies": [long_id]},
        {"id": "parallel", "type": "wait", "parameters": {"seconds": 1}},
        {"id": "y" * 64, "type": "wait", "parameters": {"seconds": 1}, "dependencies": ["parallel"]},
        task("z" * 64, action=EXTERNAL_ARN),
    )
    check_names(compiled)
    check_asl_order(compiled)
    assert find_state(compiled, f"{long_id}.choice-11")["Type"] == "Task"


def test_a_thousand_step_dag_compiles() -> None:
    rng = random.Random(1000)
    compiled = compile_workflow(define(*random_dag(rng, 1000, 0.004)))
    deps = dependencies(compiled.definition)
    assert critical_path(compiled.layout) == longest_chain(deps)
    check_layout(compiled)
    check_names(compiled)


def test_long_interleaved_chains_compile_without_deep_recursion() -> None:
    """Two tracks where each y also waits for the previous x: no cut, no split, so the layout peels one
    layer of sources after another (500 layers). That once recursed per layer (RecursionError) and
    re-analysed the rest every time (quadratic)."""
    steps = []
    for i in range(500):
        steps.append(task(f"x{i}", *([f"x{i - 1}"] if i else [])))
        steps.append(task(f"y{i}", *([f"y{i - 1}", f"x{i - 1}"] if i else [])))
    compiled = compile_workflow(define(*steps))
    assert isinstance(compiled.layout, Seq) and len(compiled.layout.parts) == 500
    assert compiled.layout.parts[1] == Par([Leaf("x1"), Leaf("y1")])
    assert critical_path(compiled.layout) == longest_chain(dependencies(compiled.definition)) == 500
    check_layout(compiled)


def test_a_machine_over_step_functions_size_limit_is_refused_with_advice() -> None:
    steps = [task(f"s{i}", *([f"s{i - 1}"] if i else [])) for i in range(1500)]
    with pytest.raises(DefinitionTooLarge, match=r"workflow 'wf' compiles to [\d,]+ bytes .* 1,500 steps|"
                       r"workflow 'wf' compiles to [\d,]+ bytes of ASL with 1500 steps") as caught:
        compile_workflow(define(*steps))
    assert "Split it into sub-workflows" in str(caught.value)


# -- diagram -------------------------------------------------------------------------------------------


def test_mermaid_has_one_node_per_step_and_labelled_decision_edges() -> None:
    cond = {"fact": "input", "path": "$.amount", "operator": "greaterThan", "value": 100}
    definition = define(
        task("intake", name='Intake "fast"'),
        {"id": "route", "type": "decision", "dependencies": ["intake"],
         "parameters": {"choices": [{"condition": cond, "next": "review"}], "default": "approve"}},
        task("review", "route"), task("approve", "route"),
        {"id": "pause", "type": "wait", "parameters": {"seconds": 5}, "dependencies": ["review", "approve"]},
        {"id": "child", "type": "subworkflow", "action": "other", "dependencies": ["pause"]},
    )
    text = mermaid(definition)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = [line for line in lines if re.match(r"^    s\d+[\[({]", line)]
    assert len(nodes) == len(definition.steps)
    assert any("Intake #quot;fast#quot;" in line for line in nodes)
    assert '    s1{"route"}' in lines  # a decision is a rhombus
    assert "    s1 -->|choice-1| s2" in lines
    assert "    s1 -->|default| s3" in lines
    assert "    s0 --> s1" in lines  # plain dependency: no label
    assert "    start --> s0" in lines and "    s5 --> finish" in lines
