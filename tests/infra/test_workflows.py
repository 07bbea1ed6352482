"""One state machine per definition: name, inline ASL, substitutions, permissions, logging, triggers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coafi.definitions import WorkflowDefinition, load_definition
from coafi.rules.decisions import uses_rules
from infra.discovery import definition_files
from tests.infra.conftest import EXTERNAL_ARN, REPO_ROOT, Synth


def _sample_definitions() -> list[WorkflowDefinition]:
    return [load_definition(f) for f in definition_files(REPO_ROOT / "statemachines")]


def _states(asl: dict[str, Any]) -> set[str]:
    """Every state name, nested Parallel branches included."""
    names: set[str] = set()
    for name, state in asl["States"].items():
        names.add(name)
        for branch in state.get("Branches", []):
            names |= _states(branch)
        if "ItemProcessor" in state:
            names |= _states(state["ItemProcessor"])
    return names


def _invoke_resources(synth: Synth, machine: dict[str, Any]) -> set[str]:
    """The resources the machine's role may call lambda:InvokeFunction on, as comparable strings."""
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    found: set[str] = set()
    for statement in synth.role_statements(role_id):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith("lambda:") for a in actions):
            assert actions == ["lambda:InvokeFunction"], statement
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found |= {json.dumps(r, sort_keys=True) for r in resources}
    return found


def _expected_invoke(function_ids: list[str], external: tuple[str, ...] | list[str] = ()) -> set[str]:
    """Each COAFI function as CDK grants it (ARN and ARN:*), each external ARN exactly."""
    expected = {json.dumps(arn) for arn in external}
    for fid in function_ids:
        arn = {"Fn::GetAtt": [fid, "Arn"]}
        expected |= {json.dumps(arn, sort_keys=True),
                     json.dumps({"Fn::Join": ["", [arn, ":*"]]}, sort_keys=True)}
    return expected


def test_one_state_machine_per_definition_file(sample: Synth) -> None:
    definitions = _sample_definitions()
    assert {d.id for d in definitions} >= {"content-generation"}
    machines = sample.of_type("AWS::StepFunctions::StateMachine")
    assert sorted(m["Properties"]["StateMachineName"] for m in machines.values()) == \
        sorted(f"Coafi_{d.id}" for d in definitions)
    for definition in definitions:
        _, machine = sample.state_machine(f"Coafi_{definition.id}")
        props = machine["Properties"]
        assert props["StateMachineType"] == "STANDARD"
        assert props["TracingConfiguration"] == {"Enabled": True}
        asl = json.loads(props["DefinitionString"])  # inline, not an S3 asset
        states = _states(asl)
        task_steps = {s.id for s in definition.steps if s.type in ("task", "subworkflow")}
        assert task_steps <= states, f"{definition.id}: steps missing from the ASL: {task_steps - states}"


@pytest.mark.parametrize("definition", _sample_definitions(), ids=lambda d: d.id)
def test_sample_state_machine_may_invoke_exactly_the_functions_it_uses(
    sample: Synth, definition: WorkflowDefinition
) -> None:
    _, machine = sample.state_machine(f"Coafi_{definition.id}")
    used = sorted({s.action for s in definition.steps if s.type == "task" and not s.is_external}
                  | {s.compensate for s in definition.steps if s.compensate})  # compensations: docs/saga-and-dlq.md
    functions = [sample.function_id(f"COAFI action {a}") for a in used]
    functions.append(sample.function_id("COAFI state function of Coafi: records executions and steps"))
    if uses_rules(definition):
        functions.append(sample.function_id("COAFI rules function of Coafi: evaluates the rules of decisions"))
    external = sorted({s.action for s in definition.steps if s.is_external})
    assert _invoke_resources(sample, machine) == _expected_invoke(functions, external)


def test_substitutions_point_at_the_right_resources(focused: Synth) -> None:
    _, parent = focused.state_machine("Focus_parent")
    child_id, _ = focused.state_machine("Focus_child")
    substitutions = parent["Properties"]["DefinitionSubstitutions"]
    assert substitutions["StateFunctionArn"] == {"Fn::GetAtt": [
        focused.function_id("COAFI state function of Focus: records executions and steps"), "Arn"]}
    assert substitutions["Action_echo"] == {"Fn::GetAtt": [focused.function_id("COAFI action echo"), "Arn"]}
    assert substitutions["Workflow_child"] == {"Ref": child_id}
    asl = parent["Properties"]["DefinitionString"]
    assert EXTERNAL_ARN in asl  # external functions are inlined by the compiler
    assert {"first", "enrich", "runChild"} <= _states(json.loads(asl))


def test_external_function_and_own_functions_only(focused: Synth) -> None:
    _, parent = focused.state_machine("Focus_parent")
    functions = [focused.function_id("COAFI action echo"),
                 focused.function_id("COAFI state function of Focus: records executions and steps")]
    assert _invoke_resources(focused, parent) == _expected_invoke(functions, [EXTERNAL_ARN])
    _, child = focused.state_machine("Focus_child")
    functions = [focused.function_id("COAFI action store"),
                 focused.function_id("COAFI state function of Focus: records executions and steps")]
    assert _invoke_resources(focused, child) == _expected_invoke(functions)


def test_parent_may_run_its_child_synchronously(focused: Synth) -> None:
    _, parent = focused.state_machine("Focus_parent")
    child_id, _ = focused.state_machine("Focus_child")
    statements = focused.role_statements(parent["Properties"]["RoleArn"]["Fn::GetAtt"][0])

    def granted(action: str) -> list[Any]:
        return [s["Resource"] for s in statements
                if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]

    assert granted("states:StartExecution") == [{"Ref": child_id}]
    execution_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"},
                                       ":", {"Ref": "AWS::AccountId"}, ":execution:Focus_child:*"]]}
    assert granted("states:DescribeExecution") == [execution_arn]
    assert granted("states:StopExecution") == [execution_arn]
    rule_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":events:", {"Ref": "AWS::Region"}, ":",
                                  {"Ref": "AWS::AccountId"},
                                  ":rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"]]}
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert granted(action) == [rule_arn]
    # the child starts nothing
    _, child = focused.state_machine("Focus_child")
    child_statements = focused.role_statements(child["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    assert not [s for s in child_statements if "states:StartExecution" in s["Action"]]


def test_logging_level_follows_the_definition_without_execution_data(focused: Synth) -> None:
    for name, level in (("Focus_parent", "ERROR"), ("Focus_child", "ALL")):
        _, machine = focused.state_machine(name)
        logging = machine["Properties"]["LoggingConfiguration"]
        assert logging["Level"] == level
        assert logging["IncludeExecutionData"] is False
        group = focused.resources[logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
                                  ["Fn::GetAtt"][0]]
        assert group["Properties"]["LogGroupName"] == f"/aws/vendedlogs/states/{name}"
        assert group["Properties"]["RetentionInDays"] == 30


def test_event_trigger_rule_on_the_app_bus(sample: Synth, focused: Synth) -> None:
    # Triggers reach the engine API function, which starts the workflow once per event id
    # (docs/engine-api.md); the whole event is the execution input, as before.
    bus_id = next(iter(sample.of_type("AWS::Events::EventBus")))
    dlq_id = next(k for k, q in sample.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"])
    api_id = sample.function_id("COAFI engine API of Coafi: commands and event triggers")
    rules = [r["Properties"] for r in sample.of_type("AWS::Events::Rule").values()
             if "content-generation" in r["Properties"]["Targets"][0].get("InputTransformer", {}).get(
                 "InputTemplate", "")]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["EventBusName"] == {"Ref": bus_id}
    assert rule["EventPattern"] == {"source": ["coafi.content"], "detail-type": ["ContentRequested"]}
    target = rule["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": [api_id, "Arn"]}
    assert "InputPath" not in target and "Input" not in target
    assert json.loads(target["InputTransformer"]["InputTemplate"].replace("<aws.events.event.json>", "null")) == {
        "coafiTrigger": {"workflowId": "content-generation"}, "event": None}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1

    focused_rules = [r["Properties"] for r in focused.of_type("AWS::Events::Rule").values()
                     if "InputTransformer" in r["Properties"]["Targets"][0]]
    assert [r["EventPattern"] for r in focused_rules] == [
        {"source": ["test.orders"], "detail-type": ["OrderPlaced"], "detail": {"region": ["eu"]}}
    ]


def test_schedule_triggers(focused: Synth) -> None:
    schedules = {json.dumps(s["Properties"]["Target"]["Arn"]): s["Properties"]
                 for s in focused.of_type("AWS::Scheduler::Schedule").values()}
    assert len(schedules) == 2
    parent_id, _ = focused.state_machine("Focus_parent")
    child_id, _ = focused.state_machine("Focus_child")
    dlq_id = next(k for k, q in focused.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"])
    parent = schedules[json.dumps({"Ref": parent_id})]
    child = schedules[json.dumps({"Ref": child_id})]
    assert parent["ScheduleExpression"] == "cron(0 9 * * ? *)"
    assert parent["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert child["ScheduleExpression"] == "rate(5 minutes)"
    for schedule in (parent, child):
        assert schedule["GroupName"] == "Focus-schedules"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert json.loads(schedule["Target"]["Input"]) == {"trigger": "schedule"}
        assert schedule["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
        assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
