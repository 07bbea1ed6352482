"""Rules in workflows: rule files, decisions with rule: (compiled, validated, run in process), the rules function
and the deploy custom resource."""

from __future__ import annotations

import http.server
import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from coafi.cli.main import main
from coafi.compiler import compile_workflow
from coafi.definitions import DefinitionError, validate_definition
from coafi.rules import InMemoryRuleStore, RuleEngine, RuleNotFoundError, UndefinedFactError
from coafi.rules.deploy import (
    CustomResourceEvent,
    handle_event,
    parse_rules_json,
    rules_json,
    send_response,
)
from coafi.rules.files import expand_conditions, load_rule_files
from coafi.rules.step import RulesRequest, evaluate_request
from tests.unit.test_rules_dynamo import store  # noqa: F401 - fixture

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def decision(*choices: dict[str, Any], default: list[str] | None = None) -> dict[str, Any]:
    targets = sorted({t for c in choices for t in c["next"]} | set(default or []))
    return {
        "id": "w", "name": "W", "version": "1",
        "steps": [
            {"id": "route", "type": "decision",
             "parameters": {"choices": list(choices), "default": default or []}},
            *({"id": t, "type": "wait", "dependencies": ["route"], "parameters": {"seconds": 0}} for t in targets),
        ],
    }


# -- rule files ---------------------------------------------------------------------------------------------


def test_the_repository_rule_files_load_and_named_conditions_are_expanded() -> None:
    files, problems = load_rule_files(REPO_ROOT / "statemachines" / "rules")
    assert problems == []
    by_id = {r.id: r for f in files for r in f.rules}
    assert {"priority-review", "long-form"} <= set(by_id)
    priority = by_id["priority-review"]
    assert priority.category == "content-review" and priority.priority == 2
    assert "from-partner" not in json.dumps(priority.conditions)  # self-contained in the registry
    engine = RuleEngine()
    assert engine.evaluate(priority.engine_rule(), {"input": {"requester": {"tier": "partner"}}}).satisfied
    assert not engine.evaluate(priority.engine_rule(), {"input": {"topic": "cooking"}}).satisfied


def test_expanding_keeps_a_references_priority() -> None:
    named = {"a": {"all": [{"condition": "b"}]}, "b": {"any": [{"fact": "x", "operator": "equal", "value": 1}]}}
    assert expand_conditions({"not": {"condition": "a", "priority": 3}}, named) == {
        "not": {"all": [{"any": [{"fact": "x", "operator": "equal", "value": 1}]}], "priority": 3}}


def test_malformed_rule_files_are_reported_with_file_and_json_path(tmp_path: Path) -> None:
    write(tmp_path, "a.json", json.dumps({
        "rules": [
            {"id": "op", "conditions": {"all": [{"fact": "input", "operator": "equals", "value": 1}]}},
            {"id": "cycle", "conditions": {"any": [{"condition": "x"}]}},
            {"conditions": {"all": []}},
            {"id": "types", "priority": "high", "conditions": {"all": []}},
            {"id": "nofact", "conditions": {"all": [{"operator": "equal", "value": 1}]}},
            {"id": "dup", "conditions": {"all": []}},
        ],
        "conditions": {"x": {"all": [{"condition": "y"}]}, "y": {"any": [{"condition": "x"}]}},
    }))
    write(tmp_path, "b.yaml", "id: dup\nconditions: {all: []}\n")
    write(tmp_path, "c.json", "{not json")
    files, problems = load_rule_files(tmp_path)
    text = "\n".join(str(p) for p in problems)
    a, b, c = (str(tmp_path / n) for n in ("a.json", "b.yaml", "c.json"))
    assert f"{a}: $.rules[0].conditions.all[0].operator: unknown operator 'equals'; did you mean 'equal'?" in text
    assert f"{a}: $.conditions[\"y\"]" in text and "cycle: y -> x -> y" in text
    assert f"{a}: $.rules[2].id: a registry rule needs an \"id\"" in text
    assert f"{a}: $.rules[3].priority: Input should be a valid integer" in text
    assert f"{a}: $.rules[4].conditions.all[0]: a condition needs \"fact\"" in text
    assert f"{b}: $.id: rule id 'dup' is already defined in {a}" in text
    assert f"{c}: invalid JSON" in text
    assert [r.id for r in files[0].rules] == ["dup"]  # the valid ones, for reference checks


# -- decisions with rules: the definition ----------------------------------------------------------------------


def test_a_choice_takes_a_condition_or_a_rule_not_both_nor_neither() -> None:
    both = decision({"rule": "r", "condition": {"fact": "input", "operator": "equal", "value": 1}, "next": ["a"]})
    neither = decision({"next": ["a"]})
    for data in (both, neither):
        with pytest.raises(DefinitionError, match=r"steps\[0\]\.parameters\.choices\[0\]: a choice needs exactly "
                                                  r"one of condition \(native\) or rule"):
            validate_definition(data, "w.yaml")


def test_inline_rules_are_checked_with_the_json_path_of_each_problem() -> None:
    bad = {"conditions": {"all": [{"fact": "input", "path": "$.n", "operator": "greaterThen", "value": 1},
                                  {"fact": "user", "operator": "in", "value": 5},
                                  {"not": {"fact": "steps", "operator": "equal", "value": {"fact": "other"}}}]}}
    with pytest.raises(DefinitionError) as caught:
        validate_definition(decision({"rule": bad, "next": ["a"]}), "w.yaml")
    text = str(caught.value)
    assert "w.yaml: step 'route': steps[0].parameters.choices[0].rule: invalid inline rule:" in text
    assert "$.conditions.all[0].operator: unknown operator 'greaterThen'; did you mean 'greaterThan'?" in text
    assert "$.conditions.all[1].value: in needs an array (or string) value, not a number" in text
    assert "$.conditions.all[1].fact: unknown fact 'user'" in text
    assert "$.conditions.all[2].not.value.fact: unknown fact 'other'" in text
    with pytest.raises(DefinitionError, match="is not a rule id"):
        validate_definition(decision({"rule": "has spaces", "next": ["a"]}), "w.yaml")


def test_coafi_validate_checks_rule_files_and_the_rules_decisions_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machines = tmp_path / "statemachines"
    write(machines, "rules/r.json", json.dumps([
        {"id": "big", "conditions": {"all": [{"fact": "input", "path": "$.n", "operator": "greaterThan",
                                              "value": 10}]}},
        {"id": "ages", "conditions": {"all": [{"fact": "age", "operator": "greaterThan", "value": 17}]}},
        {"id": "broken", "conditions": {"all": [{"fact": "input", "operator": "nope", "value": 1}]}},
    ]))
    write(machines, "w.yaml", json.dumps(decision({"rule": "big", "next": ["a"]}, {"rule": "missing", "next": ["b"]},
                                                  {"rule": "ages", "next": ["c"]})))
    assert main(["validate", str(machines)]) == 1
    err = capsys.readouterr().err
    w, r = machines / "w.yaml", machines / "rules" / "r.json"
    assert f"{r}: $[2].conditions.all[0].operator: unknown operator 'nope'" in err
    assert (f"{w}: step 'route': steps[0].parameters.choices[1].rule: unknown rule 'missing': no file in "
            f"{machines / 'rules'} defines it (rules found: ages, big)") in err
    assert f"{w}: step 'route': steps[0].parameters.choices[2].rule: rule 'ages' ({r}: $[1].conditions.all[0].fact)" \
           f": unknown fact 'age'" in err

    write(machines, "rules/r.json", json.dumps([{"id": "big", "conditions": {"all": []}},
                                                {"id": "missing", "conditions": {"all": []}},
                                                {"id": "ages", "conditions": {"all": []}}]))
    assert main(["validate", str(machines)]) == 0
    assert "ok  w v1: 4 steps\nok  3 registry rules" in capsys.readouterr().out


def test_the_repository_validates_with_its_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO_ROOT / "statemachines")]) == 0
    assert "ok  content-review" in capsys.readouterr().out


# -- decisions with rules: the compiled machine ------------------------------------------------------------------


def test_the_rules_task_runs_before_the_choice_which_routes_on_its_result() -> None:
    inline = {"name": "small", "conditions": {"all": [{"fact": "input", "path": "$.n", "operator": "lessThan",
                                                       "value": 5}]}, "event": {"type": "x", "params": {"k.$": "v"}}}
    definition = validate_definition(decision(
        {"condition": {"fact": "input", "path": "$.vip", "operator": "equal", "value": True}, "next": ["vip"]},
        {"rule": "big-order", "next": ["big"]},
        {"rule": inline, "next": ["small"]},
        default=["other"],
    ), "w.yaml")
    compiled = compile_workflow(definition)
    body = compiled.asl["States"]["coafi.run"]["Branches"][0]
    states = body["States"]
    assert body["StartAt"] == "route.rules"
    task = states["route.rules"]
    assert task["Next"] == "route" and task["ResultPath"] == "$.steps.route"
    assert task["ResultSelector"] == {"rules.$": "$.Payload"}
    assert task["Parameters"]["FunctionName"] == "${RulesFunctionArn}"
    payload = task["Parameters"]["Payload"]
    assert payload["rules"][0] == {"key": "c2", "ruleId": "big-order"}
    assert payload["rules"][1]["key"] == "c3" and json.loads(payload["rules"][1]["ruleJson"]) == inline
    assert (payload["input.$"], payload["steps.$"]) == ("$.input", "$.steps")
    choices = states["route"]["Choices"]
    assert choices[0]["Next"] == "route.choice-1" and "And" in choices[0]  # the native condition, as before
    assert choices[1] == {"Variable": "$.steps.route.rules.satisfied.c2", "BooleanEquals": True,
                          "Next": "route.choice-2"}
    assert choices[2]["Variable"] == "$.steps.route.rules.satisfied.c3"
    assert states["route"]["Default"] == "route.default"
    decide = states["route.default"]["Parameters"]["Payload"]
    assert decide["rules.$"] == "$.steps.route.rules" and [s["stepId"] for s in decide["skipped"]] == [
        "big", "small", "vip"]
    assert compiled.substitutions["RulesFunctionArn"].kind == "rules-function"


def test_decisions_without_rules_compile_as_before() -> None:
    compiled = compile_workflow(validate_definition(decision(
        {"condition": {"fact": "input", "path": "$.n", "operator": "equal", "value": 1}, "next": ["a"]}), "w.yaml"))
    assert "RulesFunctionArn" not in compiled.substitutions and "rules" not in json.dumps(compiled.asl)


# -- the rules function ---------------------------------------------------------------------------------------


def request(*rules: dict[str, Any], workflow_input: Any = None, steps: Any = None) -> RulesRequest:
    return RulesRequest.model_validate({"context": {"executionId": "e", "workflowId": "w", "stepId": "route"},
                                        "rules": list(rules), "input": workflow_input, "steps": steps or {}})


def test_the_rules_function_evaluates_named_and_inline_rules_against_input_and_steps() -> None:
    engine = RuleEngine(store=InMemoryRuleStore())
    engine.register_rule({"id": "approved", "conditions": {"all": [
        {"fact": "steps", "path": "$.check.output.approved", "operator": "equal", "value": True}]},
        "event": {"type": "ok"}})
    engine.register_rule({"id": "off", "enabled": False, "conditions": {"all": []}})
    inline = json.dumps({"conditions": {"any": [{"fact": "input", "path": "$.n", "operator": "greaterThan",
                                                 "value": 3}]}})
    response = evaluate_request(request({"key": "c1", "ruleId": "off"}, {"key": "c2", "ruleId": "approved"},
                                        {"key": "c3", "ruleJson": inline},
                                        workflow_input={"n": 5}, steps={"check": {"output": {"approved": True}}}),
                                engine)
    assert response.satisfied == {"c1": False, "c2": True, "c3": True}
    assert response.matched == "c2"
    assert [(r.ruleId, r.enabled, r.version, r.event) for r in response.results] == [
        ("off", False, 1, None), ("approved", True, 1, {"type": "ok"}), (None, True, None, {"type": "choice"})]

    none = evaluate_request(request({"key": "c1", "ruleJson": inline}, workflow_input={"n": 1}), engine)
    assert (none.satisfied, none.matched) == ({"c1": False}, None)


def test_the_rules_function_fails_loudly_on_what_it_cannot_evaluate() -> None:
    engine = RuleEngine(store=InMemoryRuleStore())
    with pytest.raises(RuleNotFoundError, match="no rule with id 'gone'"):
        evaluate_request(request({"key": "c1", "ruleId": "gone"}), engine)
    unknown_fact = json.dumps({"conditions": {"all": [{"fact": "age", "operator": "equal", "value": 1}]}})
    with pytest.raises(UndefinedFactError, match="Undefined fact: age"):
        evaluate_request(request({"key": "c1", "ruleJson": unknown_fact}), engine)
    with pytest.raises(ValueError, match="exactly one of ruleId or ruleJson"):
        request({"key": "c1"})
    with pytest.raises(ValueError, match="unique"):
        request({"key": "c1", "ruleId": "a"}, {"key": "c1", "ruleId": "b"})


# -- the deploy custom resource ----------------------------------------------------------------------------


def cfn_event(kind: str, rules: list[dict[str, Any]], old: list[dict[str, Any]] | None = None,
              file: str = "f.json") -> CustomResourceEvent:
    from coafi.rules.models import Rule

    def props(items: list[dict[str, Any]]) -> dict[str, str]:
        return {"ServiceToken": "arn", "File": file, "RulesJson": rules_json([Rule.model_validate(r) for r in items])}

    event: dict[str, Any] = {
        "RequestType": kind, "ResponseURL": "http://127.0.0.1:1/r", "StackId": "stack", "RequestId": "req",
        "LogicalResourceId": "FileFJson", "ResourceType": "Custom::CoafiRuleFile", "ResourceProperties": props(rules),
    }
    if kind != "Create":
        event["PhysicalResourceId"] = f"coafi-rules:{file}"
    if old is not None:
        event["OldResourceProperties"] = props(old)
    return CustomResourceEvent.model_validate(event)


def simple(rule_id: str, value: Any = 1) -> dict[str, Any]:
    return {"id": rule_id, "conditions": {"all": [{"fact": "input", "operator": "equal", "value": value}]}}


def test_the_custom_resource_registers_updates_and_unregisters_a_files_rules(store: Any) -> None:  # noqa: F811
    created = handle_event(cfn_event("Create", [simple("a"), simple("b")]), store)
    assert (created.Status, created.PhysicalResourceId, created.Data) == ("SUCCESS", "coafi-rules:f.json",
                                                                          {"RuleIds": "a,b"})
    assert [r.id for r in store.list()] == ["a", "b"]

    updated = handle_event(cfn_event("Update", [simple("a", 2), simple("c")], old=[simple("a"), simple("b")]), store)
    assert updated.Status == "SUCCESS"
    assert [(r.id, r.version) for r in store.list()] == [("a", 2), ("c", 1)]  # b left the file
    assert store.get("a").conditions["all"][0]["value"] == 2

    handle_event(cfn_event("Create", [simple("c", 3)], file="g.json"), store)  # c moved to another file
    deleted = handle_event(cfn_event("Delete", [simple("a", 2), simple("c")]), store)
    assert deleted.Status == "SUCCESS" and deleted.PhysicalResourceId == "coafi-rules:f.json"
    assert [r.id for r in store.list()] == ["c"]  # g.json's now


def test_a_malformed_rule_fails_the_resource_and_stores_nothing(store: Any) -> None:  # noqa: F811
    bad = simple("bad")
    bad["conditions"]["all"][0]["operator"] = "equals"
    response = handle_event(cfn_event("Create", [simple("good"), bad]), store)
    assert response.Status == "FAILED"
    assert response.Reason.startswith("f.json: RuleValidationError: $.conditions.all[0].operator: unknown operator")
    assert store.list() == []


def test_the_response_is_put_to_the_presigned_url() -> None:
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers.get("Content-Type", "?"), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = handle_event(cfn_event("Delete", []), InMemoryStoreWithSource())  # type: ignore[arg-type]
        send_response(f"http://127.0.0.1:{server.server_port}/bucket/key?X-Amz-Signature=abc", response)
    finally:
        server.shutdown()
    ((path, content_type, body),) = received
    assert path == "/bucket/key?X-Amz-Signature=abc" and content_type == ""
    assert json.loads(body)["Status"] == "SUCCESS" and json.loads(body)["RequestId"] == "req"


class InMemoryStoreWithSource(InMemoryRuleStore):
    def delete_from_source(self, rule_id: str, source: str) -> bool:
        return self.delete(rule_id)


def test_rules_json_round_trips_the_rules() -> None:
    from coafi.rules.models import Rule

    rules = [Rule.model_validate({**simple("a", 1.5), "onSuccess": {"x": 1}, "category": "c"})]
    assert parse_rules_json(rules_json(rules)) == rules


# -- the rules step ----------------------------------------------------------------------------------------


def rules_step(parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "w", "name": "W", "version": "1",
            "steps": [{"id": "assess", "type": "rules", "parameters": parameters, **extra}]}


def test_a_rules_step_is_a_recorded_task_of_the_rules_function() -> None:
    inline = {"conditions": {"all": [{"fact": "input", "path": "$.n", "operator": "greaterThan", "value": 1}]}}
    definition = validate_definition(rules_step({"rules": ["vip", inline], "category": "pricing"},
                                                retryPolicy={"maxAttempts": 2}), "w.yaml")
    compiled = compile_workflow(definition)
    states = compiled.asl["States"]["coafi.run"]["Branches"][0]["States"]
    assert states["assess.started"]["Next"] == "assess" and states["assess"]["Next"] == "assess.finished"
    task = states["assess"]
    assert task["Parameters"]["FunctionName"] == "${RulesFunctionArn}"
    payload = task["Parameters"]["Payload"]
    assert payload["rules"][0] == {"key": "r1", "ruleId": "vip"} and payload["category"] == "pricing"
    assert json.loads(payload["rules"][1]["ruleJson"]) == inline
    assert (task["ResultSelector"], task["ResultPath"]) == ({"output.$": "$.Payload"}, "$.steps.assess")
    (retrier,) = task["Retry"]  # the step's retryPolicy (2 attempts), whose transient errors cover Lambda's
    assert retrier["MaxAttempts"] == 1 and {"Lambda.ServiceException", "TransientError"} <= set(retrier["ErrorEquals"])
    assert states["assess.finished"]["Parameters"]["Payload"]["output.$"] == "$.steps.assess.output"


@pytest.mark.parametrize(
    ("parameters", "extra", "message"),
    [
        ({}, {}, "a rules step needs parameters.rules"),
        ({"rules": ["ok", {"conditions": {"all": [{"fact": "input", "operator": "nope", "value": 1}]}}]}, {},
         r"rules\[1\]: invalid inline rule: \$\.conditions\.all\[0\]\.operator: unknown operator 'nope'"),
        ({"rules": ["ok"]}, {"action": "echo"}, "a rules step takes no action"),
    ],
)
def test_malformed_rules_steps_are_refused(parameters: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        validate_definition(rules_step(parameters, **extra), "w.yaml")


def test_a_rules_step_naming_an_unknown_rule_fails_validation(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    machines = tmp_path / "statemachines"
    write(machines, "rules/r.json", json.dumps({"id": "known", "conditions": {"all": []}}))
    write(machines, "w.yaml", json.dumps(rules_step({"rules": ["known", "unknown"]})))
    assert main(["validate", str(machines)]) == 1
    assert "steps[0].parameters.rules[1]: unknown rule 'unknown'" in capsys.readouterr().err


def test_a_category_brings_its_enabled_rules_after_the_named_ones() -> None:
    engine = RuleEngine(store=InMemoryRuleStore())
    for rule_id, value, enabled in (("b-rule", 1, True), ("a", 2, True), ("off", 1, False), ("named", 1, True)):
        engine.register_rule({"id": rule_id, "category": "c", "enabled": enabled, "event": {"type": rule_id},
                              "conditions": {"all": [{"fact": "input", "operator": "equal", "value": value}]}})
    response = evaluate_request(RulesRequest.model_validate(
        {"rules": [{"key": "r1", "ruleId": "named"}], "category": "c", "input": 1}), engine)
    assert [(r.key, r.ruleId, r.satisfied) for r in response.results] == [
        ("r1", "named", True), ("a", "a", False), ("rule_b_rule", "b-rule", True)]
    assert response.events == [{"type": "named"}, {"type": "b-rule"}]
    with pytest.raises(ValueError, match="give rules, a category, or both"):
        RulesRequest.model_validate({"input": 1})


def test_coafi_rules_deploy_and_list_against_a_table(store: Any, tmp_path: Path,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "r.json", json.dumps([{**simple("a"), "category": "x"}, {**simple("b"), "category": "y"}]))
    assert main(["rules", "deploy", str(tmp_path), "--table", store.table_name]) == 0
    assert f"ok  2 rules of {tmp_path} registered in {store.table_name}: a, b" in capsys.readouterr().out
    assert main(["rules", "list", "--table", store.table_name, "--category", "y"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"id": "b", "version": 1, "category": "y", "enabled": True, "priority": 1,
                                "description": ""}
    write(tmp_path, "bad.json", json.dumps({"id": "c", "conditions": {"any": [{"fact": "input"}]}}))
    assert main(["rules", "deploy", str(tmp_path), "--table", store.table_name]) == 1
    assert "bad.json: $.conditions.any[0]" in capsys.readouterr().err
    assert [r.id for r in store.list()] == ["a", "b"]  # nothing of the refused folder was written
