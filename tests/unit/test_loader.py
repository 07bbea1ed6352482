"""Every mistake a user can make in a definition is reported precisely: file, step id, field, and a message
that says what to change. All problems of a file come out together."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coafi.definitions import (
    DefinitionError,
    Problem,
    WorkflowDefinition,
    load_definition,
    load_definitions,
    validate_definition,
)
from coafi.definitions.models import KNOWN_STEP_TYPES

ACTIONS = {"echo", "notify", "generate-content"}
FILE = "wf.yaml"
EXTERNAL_ARN = "arn:aws:lambda:us-east-1:123456789012:function:partner-scoring"
DECISION = {
    "choices": [{"condition": {"fact": "input", "path": "$.amount", "operator": "greaterThan", "value": 100},
                 "next": ["big"]}],
    "default": ["small"],
}


def workflow(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "orders", "name": "Orders", "version": "1",
                            "steps": list(steps) or [{"id": "a", "action": "echo"}]}
    data.update(fields)
    return data


def task(step_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", "action": "echo", "dependencies": list(deps), **fields}


def decision(step_id: str = "route", *deps: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": step_id, "type": "decision", "dependencies": list(deps),
            "parameters": copy.deepcopy(DECISION if parameters is None else parameters)}


def problems_of(data: Any, actions: set[str] | None = ACTIONS) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, FILE, actions=actions)
    return caught.value.problems


@dataclass(frozen=True)
class Case:
    name: str
    data: dict[str, Any]
    path: str
    step: str | None
    message: str  # a fragment of the message (most are the whole message)
    count: int = 1  # problems the mistake causes: one, unless it breaks two rules


CASES = [
    # -- dependencies and graph ----------------------------------------------------------------------
    Case("unknown dependency with did-you-mean", workflow(task("alpha"), task("b", "alpah")),
         "steps[1].dependencies[0]", "b", "unknown step 'alpah'; did you mean 'alpha'?"),
    Case("unknown dependency without a close name", workflow(task("alpha"), task("b", "zzz")),
         "steps[1].dependencies[0]", "b", "unknown step 'zzz'"),
    Case("dependency cycle of two", workflow(task("a", "b"), task("b", "a")),
         "steps[0].dependencies", "a", "dependency cycle: a -> b -> a"),
    Case("dependency cycle of three", workflow(task("x"), task("a", "c"), task("b", "a"), task("c", "b")),
         "steps[1].dependencies", "a", "dependency cycle: a -> c -> b -> a"),
    Case("duplicate step id", workflow(task("a"), task("b"), task("a")),
         "steps[2].id", "a", "duplicate step id 'a' (first used at steps[0])"),
    Case("self-dependency", workflow(task("a"), task("b", "a", "b")),
         "steps[1].dependencies[1]", "b", "a step cannot depend on itself"),
    Case("invalid step id", workflow(task("1st")),
         "steps[0].id", "1st", "id '1st' is not valid: use a letter, then letters, digits, '_' or '-'"),
    Case("step without id", workflow({"action": "echo"}),
         "steps[0].id", None, "required field 'id' is missing"),
    # -- step types and actions ----------------------------------------------------------------------
    Case("unknown step type 'parallel' gets a hint", workflow(task("a", type="parallel")),
         "steps[0].type", "a",
         f"unknown step type 'parallel'; use one of: {', '.join(KNOWN_STEP_TYPES)} "
         "(steps without dependencies between them already run in parallel)"),
    Case("unknown step type", workflow(task("a", type="lambda")),
         "steps[0].type", "a", f"unknown step type 'lambda'; use one of: {', '.join(KNOWN_STEP_TYPES)}"),
    Case("unknown action with did-you-mean", workflow(task("a", action="ecko")),
         "steps[0].action", "a", "unknown action 'ecko': no functions/actions/ecko/handler.py; did you mean 'echo'?"),
    Case("task without action", workflow({"id": "a"}),
         "steps[0].action", "a", "a task step needs an action"),
    Case("malformed Lambda ARN", workflow(task("a", action="arn:aws:lambda:us-east-1:42:function:f")),
         "steps[0].action", "a", "is neither an action name (functions/actions/<name>) nor a Lambda ARN"),
    Case("subworkflow with a bad workflow id", workflow({"id": "child", "type": "subworkflow", "action": "Bad_Id"}),
         "steps[0].action", "child", "a subworkflow step's action must be a workflow id, got 'Bad_Id'"),
    Case("subworkflow without action", workflow({"id": "child", "type": "subworkflow"}),
         "steps[0].action", "child", "a subworkflow step needs an action"),
    # -- workflow fields -----------------------------------------------------------------------------
    Case("empty workflow", workflow(steps=[]), "steps", None, "the workflow has no steps; add at least one"),
    Case("missing id", {"name": "N", "version": "1", "steps": [task("a")]}, "id", None,
         "required field 'id' is missing"),
    Case("missing name", {"id": "x", "version": "1", "steps": [task("a")]}, "name", None,
         "required field 'name' is missing"),
    Case("missing steps", {"id": "x", "name": "N", "version": "1"}, "steps", None,
         "required field 'steps' is missing"),
    Case("bad workflow id", workflow(id="Orders_V2"), "id", None,
         "id 'Orders_V2' is not valid: use lowercase letters, digits and dashes, e.g. content-generation"),
    Case("numeric version asks to quote it", workflow(version=1.0), "version", None,
         'version must be a string; quote it: version: "1.0"'),
    Case("integer version asks to quote it", workflow(version=2), "version", None,
         'version must be a string; quote it: version: "2"'),
    Case("unknown top-level field with did-you-mean", workflow(step=[]), "step", None,
         "unknown field 'step'; did you mean 'steps'?"),
    Case("unknown step field with did-you-mean", workflow(task("a", dependancies=[])),
         "steps[0].dependancies", "a", "unknown field 'dependancies'; did you mean 'dependencies'?"),
    Case("unknown logLevel", workflow(logLevel="DEBUG"), "logLevel", None,
         "Input should be 'ALL', 'ERROR', 'FATAL' or 'OFF' (got 'DEBUG')"),
    # -- retry and timeout ---------------------------------------------------------------------------
    Case("maxAttempts 0", workflow(task("a", retryPolicy={"maxAttempts": 0})),
         "steps[0].retryPolicy.maxAttempts", "a", "greater than or equal to 1 (got 0)"),
    Case("backoffRate below 1", workflow(task("a", retryPolicy={"backoffRate": 0.5})),
         "steps[0].retryPolicy.backoffRate", "a", "greater than or equal to 1 (got 0.5)"),
    Case("maxDelaySeconds below intervalSeconds",
         workflow(task("a", retryPolicy={"intervalSeconds": 10, "maxDelaySeconds": 5})),
         "steps[0].retryPolicy.maxDelaySeconds", "a",
         "maxDelaySeconds (5) is smaller than intervalSeconds (10); raise maxDelaySeconds or lower intervalSeconds"),
    Case("unknown jitter", workflow(task("a", retryPolicy={"jitter": "partial"})),
         "steps[0].retryPolicy.jitter", "a", "Input should be 'full' or 'none' (got 'partial')"),
    Case("retryOn mixes States.ALL with others",
         workflow(task("a", retryPolicy={"retryOn": ["States.ALL", "Boom"]})),
         "steps[0].retryPolicy.retryOn", "a", "retryOn: States.ALL matches every error and must stand alone"),
    Case("retryOn empty", workflow(task("a", retryPolicy={"retryOn": []})),
         "steps[0].retryPolicy.retryOn", "a", "retryOn is empty; omit it to retry the transient errors"),
    Case("misspelt retry field", workflow(task("a", retryPolicy={"maxAttempt": 3})),
         "steps[0].retryPolicy.maxAttempt", "a", "unknown field 'maxAttempt'; did you mean 'maxAttempts'?"),
    Case("retryPolicy on a wait step",
         workflow({"id": "w", "type": "wait", "parameters": {"seconds": 1}, "retryPolicy": {}}),
         "steps[0].retryPolicy", "w", "a wait step cannot have a retryPolicy"),
    Case("timeoutSeconds 0", workflow(task("a", timeoutSeconds=0)),
         "steps[0].timeoutSeconds", "a", "greater than or equal to 1 (got 0)"),
    # -- wait ----------------------------------------------------------------------------------------
    Case("wait with neither seconds nor until", workflow({"id": "w", "type": "wait"}),
         "steps[0].parameters", "w", "a wait step needs exactly one of parameters.seconds or parameters.until"),
    Case("wait with both seconds and until",
         workflow({"id": "w", "type": "wait", "parameters": {"seconds": 5, "until": "2026-12-01T09:00:00Z"}}),
         "steps[0].parameters", "w", "a wait step needs exactly one of parameters.seconds or parameters.until"),
    Case("negative wait", workflow({"id": "w", "type": "wait", "parameters": {"seconds": -1}}),
         "steps[0].parameters.seconds", "w", "seconds must be between 0 and 31536000 (one year), got -1"),
    Case("wait seconds neither number nor JSONPath",
         workflow({"id": "w", "type": "wait", "parameters": {"seconds": "ten"}}),
         "steps[0].parameters.seconds", "w", "seconds must be a whole number or a JSONPath starting with '$.'"),
    Case("wait until without time zone",
         workflow({"id": "w", "type": "wait", "parameters": {"until": "2026-12-01T09:00:00"}}),
         "steps[0].parameters.until", "w", "until '2026-12-01T09:00:00' needs a time zone, e.g. 2026-12-01T09:00:00Z"),
    Case("wait until not a timestamp", workflow({"id": "w", "type": "wait", "parameters": {"until": "tomorrow"}}),
         "steps[0].parameters.until", "w", "until 'tomorrow' is not an ISO-8601 timestamp"),
    Case("wait until with a space instead of T (fails at deploy time)",
         workflow({"id": "w", "type": "wait", "parameters": {"until": "2026-12-01 09:00:00Z"}}),
         "steps[0].parameters.until", "w",
         "until '2026-12-01 09:00:00Z' is not an ISO-8601 timestamp like 2026-12-01T09:00:00Z"),
    Case("wait until without seconds",
         workflow({"id": "w", "type": "wait", "parameters": {"until": "2026-12-01T09:00Z"}}),
         "steps[0].parameters.until", "w", "until '2026-12-01T09:00Z' is not an ISO-8601 timestamp"),
    Case("wait until with a zone lacking its colon",
         workflow({"id": "w", "type": "wait", "parameters": {"until": "2026-12-01T09:00:00+0200"}}),
         "steps[0].parameters.until", "w", "until '2026-12-01T09:00:00+0200' is not an ISO-8601 timestamp"),
    Case("wait until on a day that does not exist",
         workflow({"id": "w", "type": "wait", "parameters": {"until": "2026-02-30T09:00:00Z"}}),
         "steps[0].parameters.until", "w", "until '2026-02-30T09:00:00Z' is not a valid date and time"),
    Case("timeoutSeconds on a wait step (would be ignored)",
         workflow({"id": "w", "type": "wait", "parameters": {"seconds": 1}, "timeoutSeconds": 5}),
         "steps[0].timeoutSeconds", "w", "a wait step cannot have a timeoutSeconds"),
    Case("timeoutSeconds on a decision step (would be ignored)",
         workflow({**decision("route"), "timeoutSeconds": 5}, task("big", "route"), task("small", "route")),
         "steps[0].timeoutSeconds", "route", "a decision step cannot have a timeoutSeconds"),
    Case("misspelt wait parameter", workflow({"id": "w", "type": "wait", "parameters": {"second": 3}}),
         "steps[0].parameters.second", "w", "unknown field 'second'; did you mean 'seconds'?"),
    Case("wait with an action", workflow({"id": "w", "type": "wait", "action": "echo", "parameters": {"seconds": 1}}),
         "steps[0].action", "w", "a wait step takes no action"),
    # -- decisions -----------------------------------------------------------------------------------
    Case("branch target does not depend on the decision",
         workflow(decision("route"), task("big", "route"), task("small")),
         "steps[0].parameters.default[0]", "route", "branch target 'small' must list 'route' in its dependencies"),
    Case("unknown branch target",
         workflow(decision("route", parameters={"choices": DECISION["choices"], "default": ["smal"]}),
                  task("big", "route")),
         "steps[0].parameters.default[0]", "route", "unknown step 'smal'"),
    Case("same target on two branches",
         workflow(decision("route", parameters={"choices": DECISION["choices"], "default": ["big"]}),
                  task("big", "route")),
         "steps[0].parameters.default[0]", "route", "step 'big' is already on branch choice-1"),
    Case("branch step depends on something concurrent",
         workflow(task("audit"), decision("route"), task("big", "route", "audit"), task("small", "route")),
         "steps[2].dependencies", "big",
         "on a branch of decision 'route' but also depends on 'audit', which may still be running when 'route' "
         "decides; make 'route' depend on 'audit' instead"),
    Case("step depends on the decision but is on no branch",
         workflow(decision("route"), task("big", "route"), task("small", "route"), task("stray", "route")),
         "steps[3].dependencies", "stray",
         "depends on decision 'route' but is on none of its branches; name 'stray' in one of its choices' next "
         "or in its default"),
    Case("decision routes to itself",
         workflow(decision("route", parameters={"choices": DECISION["choices"], "default": ["route"]}),
                  task("big", "route")),
         "steps[0].parameters.default[0]", "route", "a decision cannot route to itself"),
    Case("decision without choices", workflow(decision("route", parameters={})),
         "steps[0].parameters.choices", "route", "required field 'choices' is missing"),
    Case("numeric operator with a text value",
         workflow(decision("route", parameters={
             "choices": [{"condition": {"fact": "input", "path": "$.amount", "operator": "greaterThan",
                                        "value": "lots"}, "next": "big"}]}), task("big", "route")),
         "steps[0].parameters.choices[0].condition.value", "route",
         "operator greaterThan compares numbers; value must be a number"),
    Case("misspelt condition field",
         workflow(decision("route", parameters={
             "choices": [{"condition": {"fact": "input", "path": "$.amount", "opertor": "equal", "value": 1},
                          "next": "big"}]}), task("big", "route")),
         "steps[0].parameters.choices[0].condition.opertor", "route",
         "unknown field 'opertor'; did you mean 'operator'?", count=2),  # and 'operator' is missing
    Case("condition path not a JSONPath",
         workflow(decision("route", parameters={
             "choices": [{"condition": {"fact": "input", "path": "amount", "operator": "equal", "value": 1},
                          "next": "big"}]}), task("big", "route")),
         "steps[0].parameters.choices[0].condition.path", "route",
         "path 'amount' is not valid: use a JSONPath such as $.order.total"),
    # -- triggers ------------------------------------------------------------------------------------
    Case("cron with 5 fields", workflow(triggers=[{"type": "schedule", "cron": "0 9 * * *"}]),
         "triggers[0].cron", None,
         "cron '0 9 * * *' has 5 fields; EventBridge cron has 6: minutes hours day-of-month month day-of-week "
         "year, e.g. '0 9 * * ? *'"),
    Case("cron without '?'", workflow(triggers=[{"type": "schedule", "cron": "cron(0 9 * * * *)"}]),
         "triggers[0].cron", None, "cron 'cron(0 9 * * * *)': one of day-of-month or day-of-week must be '?'"),
    Case("bad rate", workflow(triggers=[{"type": "schedule", "rate": "every 5 minutes"}]),
         "triggers[0].rate", None, "rate 'every 5 minutes' is not like '5 minutes', '1 hour' or '2 days'"),
    Case("rate of 1 with a plural unit", workflow(triggers=[{"type": "schedule", "rate": "1 hours"}]),
         "triggers[0].rate", None, "rate '1 hours': use the singular unit for 1 and the plural otherwise"),
    Case("rate of 5 with a singular unit", workflow(triggers=[{"type": "schedule", "rate": "rate(5 minute)"}]),
         "triggers[0].rate", None, "rate 'rate(5 minute)': use the singular unit for 1 and the plural otherwise"),
    Case("rate of 0", workflow(triggers=[{"type": "schedule", "rate": "0 minutes"}]),
         "triggers[0].rate", None, "rate must be at least 1"),
    Case("schedule with neither cron nor rate", workflow(triggers=[{"type": "schedule"}]),
         "triggers[0]", None, "a schedule trigger needs exactly one of cron or rate"),
    Case("event trigger with no pattern", workflow(triggers=[{"type": "event"}]),
         "triggers[0]", None, "an event trigger needs at least one of source, detailType or detail"),
    Case("unknown trigger type", workflow(triggers=[{"type": "webhook"}]),
         "triggers[0].type", None, "unknown trigger type 'webhook'; use one of: event, schedule, manual"),
    Case("misspelt trigger field", workflow(triggers=[{"type": "event", "sources": ["x"]}]),
         "triggers[0].sources", None, "unknown field 'sources'; did you mean 'source'?"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mistake_names_file_step_and_field(case: Case) -> None:
    problems = problems_of(case.data)
    matching = [p for p in problems if p.path == case.path and case.message in p.message]
    assert matching, f"expected {case.path}: {case.message!r}; got:\n" + "\n".join(map(str, problems))
    problem = matching[0]
    assert problem.file == FILE
    assert problem.step == case.step
    text = str(problem)
    assert text.startswith(f"{FILE}: ")
    assert case.path in text and case.message in text
    if case.step:
        assert f"step '{case.step}'" in text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mistake_is_reported_once_without_noise(case: Case) -> None:
    """One mistake, one problem: no follow-on errors (e.g. one per member of a union type)."""
    problems = problems_of(case.data)
    assert len(problems) == case.count, "\n".join(map(str, problems))


def test_all_problems_of_a_file_are_reported_together() -> None:
    data = workflow(
        task("fetch", "fecth"),                                  # unknown dependency
        task("fetch"),                                           # duplicate id
        task("score", "fetch", action="scorer"),                 # unknown action
        task("store", "score", retryPolicy={"maxAttempts": 0, "backoffRate": 0.5}),  # two retry problems
        task("report", "store", action="notfy", timeoutSeconds=0),  # unknown action on an invalid step
        {"id": "pause", "type": "wait", "parameters": {"seconds": -5}},
        id="Orders", version=3, owner="me",
    )
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, FILE, actions=ACTIONS)
    rendered = caught.value.render()
    expected = [
        "wf.yaml: id: id 'Orders' is not valid",
        'wf.yaml: version: version must be a string; quote it: version: "3"',
        "wf.yaml: owner: unknown field 'owner'",
        "wf.yaml: step 'fetch': steps[0].dependencies[0]: unknown step 'fecth'; did you mean 'fetch'?",
        "wf.yaml: step 'fetch': steps[1].id: duplicate step id 'fetch' (first used at steps[0])",
        "wf.yaml: step 'score': steps[2].action: unknown action 'scorer'",
        "wf.yaml: step 'store': steps[3].retryPolicy.maxAttempts: ",
        "wf.yaml: step 'store': steps[3].retryPolicy.backoffRate: ",
        "wf.yaml: step 'report': steps[4].action: unknown action 'notfy': no functions/actions/notfy/handler.py; "
        "did you mean 'notify'?",
        "wf.yaml: step 'report': steps[4].timeoutSeconds: ",
        "wf.yaml: step 'pause': steps[5].parameters.seconds: seconds must be between 0 and 31536000",
    ]
    for line in expected:
        assert line in rendered, f"missing {line!r} in:\n{rendered}"
    assert rendered.startswith(f"{len(expected)} problems found:")


def test_decision_problems_are_reported_alongside_unknown_actions() -> None:
    data = workflow(decision("route"), task("big", "route", action="ecco"), task("small"))
    messages = [str(p) for p in problems_of(data)]
    assert any("unknown action 'ecco'" in m for m in messages)
    assert any("branch target 'small' must list 'route'" in m for m in messages)


def test_external_lambda_arn_is_accepted_as_an_action() -> None:
    definition = validate_definition(workflow(task("score", action=EXTERNAL_ARN)), FILE, actions=set())
    assert definition.steps[0].is_external
    assert definition.steps[0].action == EXTERNAL_ARN


def test_versioned_external_lambda_arn_is_accepted() -> None:
    definition = validate_definition(workflow(task("score", action=EXTERNAL_ARN + ":live")), FILE, actions=set())
    assert definition.steps[0].is_external


def test_actions_none_skips_the_action_check() -> None:
    definition = validate_definition(workflow(task("a", action="anything-goes")), FILE, actions=None)
    assert definition.steps[0].action == "anything-goes"


def test_single_strings_are_accepted_for_lists() -> None:
    definition = validate_definition(
        workflow(task("a"), {"id": "b", "action": "echo", "dependencies": "a"},
                 triggers=[{"type": "event", "source": "shop", "detailType": "OrderPlaced"}]),
        FILE, actions=ACTIONS,
    )
    assert definition.step("b").dependencies == ["a"]
    trigger = definition.triggers[0]
    assert trigger.type == "event" and trigger.source == ["shop"] and trigger.detailType == ["OrderPlaced"]


def test_a_valid_definition_gets_defaults() -> None:
    definition = validate_definition(
        workflow(task("a", retryPolicy={}), {"id": "w", "type": "wait", "parameters": {"until": "$.input.at"},
                                              "dependencies": ["a"]}),
        FILE, actions=ACTIONS,
    )
    step = definition.step("a")
    assert step.name == "a" and step.type == "task"
    assert step.retryPolicy is not None and step.retryPolicy.maxAttempts == 3 and step.retryPolicy.jitter == "full"
    assert definition.step("w").wait.until == "$.input.at"


@pytest.mark.parametrize(
    "cron", ["0 9 * * ? *", "cron(0/15 * ? * MON-FRI *)", "0 0 1 * ? 2027"]
)
def test_valid_cron_expressions(cron: str) -> None:
    definition = validate_definition(workflow(triggers=[{"type": "schedule", "cron": cron}]), FILE, actions=ACTIONS)
    trigger = definition.triggers[0]
    assert trigger.type == "schedule" and trigger.expression.startswith("cron(")


@pytest.mark.parametrize(("rate", "expression"), [("1 minute", "rate(1 minute)"), ("rate(2 hours)", "rate(2 hours)"),
                                                  ("7 days", "rate(7 days)")])
def test_valid_rates(rate: str, expression: str) -> None:
    definition = validate_definition(workflow(triggers=[{"type": "schedule", "rate": rate}]), FILE, actions=ACTIONS)
    trigger = definition.triggers[0]
    assert trigger.type == "schedule" and trigger.expression == expression


# -- files ---------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(path: Path, actions: set[str] | None = ACTIONS) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(path, actions=actions)
    return caught.value.problems


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", 'id: a\nname: A\nversion: "1"\nsteps:\n  - id: x\n    action: echo\n'
                                           "   dependencies: [\n")
    [problem] = load_problems(path)
    assert problem.file == str(path)
    assert problem.path == "line 7 column 4"
    assert problem.message.startswith("invalid YAML: ")
    assert f"{path}: line 7 column 4: invalid YAML" in str(problem)


def test_yaml_unclosed_bracket_gives_a_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "id: a\nsteps: [\n  {id: x\n")
    [problem] = load_problems(path)
    assert problem.path.startswith("line ") and "invalid YAML" in problem.message


def test_json_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.json", '{"id": "a",\n "name": }')
    [problem] = load_problems(path)
    assert (problem.file, problem.path, problem.message) == (str(path), "line 2 column 10",
                                                           "invalid JSON: Expecting value")


def test_a_file_holding_a_list_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml", "- id: a\n- id: b\n")
    [problem] = load_problems(path)
    assert problem.message == "a definition must be a mapping with id, name, version, steps; this file is a list"


def test_an_empty_file_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.yaml", "# nothing yet\n")
    [problem] = load_problems(path)
    assert problem.message.endswith("this file is empty")


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    [problem] = load_problems(path)
    assert (problem.file, problem.message) == (str(path), "file not found")


def test_json_definitions_load(tmp_path: Path) -> None:
    path = write(tmp_path / "wf.json", json.dumps(workflow(task("a"), task("b", "a"))))
    definition = load_definition(path, actions=ACTIONS)
    assert [s.id for s in definition.steps] == ["a", "b"]


def test_problems_in_a_file_name_that_file(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.yaml", "id: orders\nname: O\nversion: '1'\nsteps:\n  - {id: a, action: echo, "
                                           "dependencies: [b]}\n")
    [problem] = load_problems(path)
    assert str(problem) == f"{path}: step 'a': steps[0].dependencies[0]: unknown step 'b'"


def test_actions_are_discovered_from_the_project_holding_the_file(tmp_path: Path) -> None:
    write(tmp_path / "functions" / "actions" / "send-mail" / "handler.py", "def handler(e, c): return e\n")
    write(tmp_path / "functions" / "actions" / "not-an-action" / "README.md", "no handler here\n")
    path = write(tmp_path / "statemachines" / "mail.yaml",
                 "id: mail\nname: Mail\nversion: '1'\nsteps:\n  - {id: send, action: send-mial}\n"
                 "  - {id: other, action: not-an-action}\n")
    problems = load_problems(path, actions=None)
    assert [(p.path, p.message) for p in problems] == [
        ("steps[0].action", "unknown action 'send-mial': no functions/actions/send-mial/handler.py; "
                            "did you mean 'send-mail'?"),
        ("steps[1].action", "unknown action 'not-an-action': no functions/actions/not-an-action/handler.py"),
    ]


def test_shipped_and_fixture_definitions_are_valid(repo_root: Path, fixture_project: Path) -> None:
    shipped = load_definitions([repo_root / "statemachines"])
    fixtures = load_definitions([fixture_project / "statemachines"])
    assert "content-generation" in {d.id for d in shipped}
    assert {d.id for d in fixtures} >= {"diamond", "routing", "resilience", "doomed", "too-slow"}
    assert all(isinstance(d, WorkflowDefinition) for d in shipped + fixtures)


# -- several files -------------------------------------------------------------------------------------


def definition_text(workflow_id: str, *steps: str) -> str:
    lines = [f"id: {workflow_id}", f"name: {workflow_id}", "version: '1'", "steps:"]
    lines += [f"  - {s}" for s in steps]
    return "\n".join(lines) + "\n"


def test_duplicate_workflow_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", definition_text("orders", "{id: a, action: echo}"))
    write(tmp_path / "b.yaml", definition_text("orders", "{id: b, action: echo}"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path], actions=ACTIONS)
    [problem] = caught.value.problems
    assert problem.file == str(tmp_path / "b.yaml") and problem.path == "id"
    assert problem.message == f"workflow id 'orders' is already used by {tmp_path / 'a.yaml'}"


def test_unknown_sub_workflow(tmp_path: Path) -> None:
    write(tmp_path / "parent.yaml", definition_text("parent", "{id: child, type: subworkflow, action: chlid}"))
    write(tmp_path / "child.yaml", definition_text("child", "{id: a, action: echo}"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path], actions=ACTIONS)
    [problem] = caught.value.problems
    assert str(problem) == (f"{tmp_path / 'parent.yaml'}: step 'child': steps[0].action: "
                            "unknown workflow 'chlid' (known workflows: child, parent)")


def test_sub_workflow_cycle_names_the_step_that_closes_it(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", definition_text("one", "{id: a, action: echo}",
                                                 "{id: runTwo, type: subworkflow, action: two, dependencies: [a]}"))
    write(tmp_path / "two.yaml", definition_text("two", "{id: runOne, type: subworkflow, action: one}"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path], actions=ACTIONS)
    [problem] = caught.value.problems
    assert str(problem) == (f"{tmp_path / 'one.yaml'}: step 'runTwo': steps[1].action: "
                            "sub-workflows start each other in a cycle: one -> two -> one")


def test_a_workflow_starting_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "loop.yaml", definition_text("loop", "{id: again, type: subworkflow, action: loop}"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path], actions=ACTIONS)
    assert "sub-workflows start each other in a cycle: loop -> loop" in str(caught.value)


def test_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", definition_text("a", "{id: x, action: echo, dependencies: [y]}"))
    write(tmp_path / "b.json", '{"id": "b", "name": "B", "version": 1, "steps": [{"id": "x", "action": "echo"}]}')
    write(tmp_path / "c.yaml", "id: [\n")
    write(tmp_path / "notes.txt", "not a definition")  # ignored: not a definition suffix
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path], actions=ACTIONS)
    files = sorted({Path(p.file).name for p in caught.value.problems})
    assert files == ["a.yaml", "b.json", "c.yaml"]
    assert caught.value.render().startswith("3 problems found:")


def test_valid_sub_workflows_load_across_files(tmp_path: Path) -> None:
    write(tmp_path / "parent.yaml", definition_text("parent", "{id: child, type: subworkflow, action: child}"))
    write(tmp_path / "child.yaml", definition_text("child", "{id: a, action: echo}"))
    loaded = load_definitions([tmp_path / "parent.yaml", tmp_path / "child.yaml"], actions=ACTIONS)
    assert [d.id for d in loaded] == ["parent", "child"]


def test_definition_error_sorts_and_deduplicates() -> None:
    one = Problem("b.yaml", "steps[1]", "y")
    two = Problem("a.yaml", "id", "x")
    error = DefinitionError([one, two, one])
    assert error.problems == [two, one]
    assert error.render() == "2 problems found:\n  - a.yaml: id: x\n  - b.yaml: steps[1]: y"
