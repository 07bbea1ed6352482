"""The rule registry in the CDK app: the rules function, the rule files' custom resources, their IAM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import aws_cdk as cdk
import pytest

from coafi.definitions import DefinitionError, load_definition
from coafi.rules.dynamo import RULE_LEADING_KEYS
from coafi.rules.files import load_rule_files
from infra.constructs.rules import DEPLOY_ACTIONS, READ_ACTIONS, RuleFiles
from tests.infra.conftest import REPO_ROOT, Synth

RULES_FUNCTION = "COAFI rules function of Coafi: evaluates the rules of decisions"
DEPLOY_FUNCTION = "COAFI rules deploy of Coafi: loads rule files into the registry"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _table_statements(sample: Synth, description: str) -> tuple[str, list[dict[str, Any]]]:
    function_id = sample.function_id(description)
    role_id = sample.resources[function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id, sample.role_statements(role_id)


@pytest.mark.parametrize(("description", "actions"), [(RULES_FUNCTION, READ_ACTIONS),
                                                      (DEPLOY_FUNCTION, DEPLOY_ACTIONS)])
def test_rules_functions_reach_only_the_rules_partition(sample: Synth, description: str, actions: list[str]) -> None:
    table_id = next(iter(sample.of_type("AWS::DynamoDB::GlobalTable")))
    role_id, statements = _table_statements(sample, description)
    assert "ManagedPolicyArns" not in sample.resources[role_id]["Properties"]
    dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in _as_list(s["Action"]))]
    assert len(dynamo) == 1
    (statement,) = dynamo
    assert sorted(_as_list(statement["Action"])) == sorted(actions) and "dynamodb:Scan" not in actions
    assert statement["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}  # no index, no other table
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(RULE_LEADING_KEYS)}}
    others = {a for s in statements for a in _as_list(s["Action"])} - set(actions)
    # no payload bucket, no bus, no invoke; failed asynchronous invocations go to the dead-letter queue
    dead_letters = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert all(a.startswith(("logs:", "xray:")) or a in dead_letters for a in others), others
    env = sample.resources[sample.function_id(description)]["Properties"]["Environment"]["Variables"]
    assert env["COAFI_TABLE_NAME"] == {"Ref": table_id} and "COAFI_EVENT_BUS_NAME" not in env


def test_one_custom_resource_per_rule_file_carrying_its_validated_rules(sample: Synth) -> None:
    files, problems = load_rule_files(REPO_ROOT / "statemachines" / "rules")
    assert not problems and files
    resources = sample.of_type("Custom::CoafiRuleFile")
    deploy_id = sample.function_id(DEPLOY_FUNCTION)
    by_file = {r["Properties"]["File"]: r for r in resources.values()}
    assert sorted(by_file) == sorted(f.file.name for f in files)
    for loaded in files:
        props = by_file[loaded.file.name]["Properties"]
        assert props["ServiceToken"] == {"Fn::GetAtt": [deploy_id, "Arn"]}
        rules = json.loads(props["RulesJson"])  # JSON text: CloudFormation would turn numbers into strings
        assert [r["id"] for r in rules] == [r.id for r in loaded.rules]
    priority = next(r for r in json.loads(by_file["content-review.json"]["Properties"]["RulesJson"])
                    if r["id"] == "priority-review")
    assert priority["priority"] == 2 and "from-partner" not in json.dumps(priority)  # named condition expanded


def test_only_workflows_with_rule_decisions_may_invoke_the_rules_function(sample: Synth) -> None:
    rules_id = sample.function_id(RULES_FUNCTION)
    for machine in sample.of_type("AWS::StepFunctions::StateMachine").values():
        name = machine["Properties"]["StateMachineName"]
        role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        resources = json.dumps([s["Resource"] for s in sample.role_statements(role_id)
                                if "lambda:InvokeFunction" in _as_list(s["Action"])])
        assert (rules_id in resources) == (name == "Coafi_content-review"), name
        definition = json.dumps(machine["Properties"].get("DefinitionSubstitutions", {}))
        assert (rules_id in definition) == (name == "Coafi_content-review")


def _bare_stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "T")


def test_a_malformed_rule_file_fails_the_synth_naming_file_and_path(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.json").write_text(json.dumps(
        {"id": "x", "conditions": {"all": [{"fact": "input", "operator": "between", "value": 1}]}}))
    with pytest.raises(DefinitionError) as caught:
        RuleFiles(_bare_stack(), "Rules", core=cast(Any, None), definitions_dir=tmp_path, workflows=[])
    assert f"{tmp_path / 'rules' / 'bad.json'}: $.conditions.all[0].operator: unknown operator 'between'" \
        in str(caught.value)


def test_a_decision_naming_a_rule_no_file_defines_fails_the_synth(tmp_path: Path) -> None:
    definition = load_definition(REPO_ROOT / "statemachines" / "content-review.yaml")
    with pytest.raises(DefinitionError, match=r"content-review.yaml: step 'route': steps\[1\]\.parameters\."
                                              r"choices\[0\]\.rule: unknown rule 'priority-review'"):
        RuleFiles(_bare_stack(), "Rules", core=cast(Any, None), definitions_dir=tmp_path,
                  workflows=[(REPO_ROOT / "statemachines" / "content-review.yaml", definition)])


def test_the_rules_functions_have_error_and_throttle_alarms(sample: Synth) -> None:
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in sample.of_type("AWS::CloudWatch::Alarm").values()}
    for label, description in (("coafi-rules", RULES_FUNCTION), ("coafi-rules-deploy", DEPLOY_FUNCTION)):
        for suffix, metric in (("errors", "Errors"), ("throttles", "Throttles")):
            props = alarms[f"Coafi-fn-{label}-{suffix}"]
            assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", metric)
            assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": sample.function_id(description)}}]
