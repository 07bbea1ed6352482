"""Each workflow's resources live in a nested stack of its own (infra/workflow_stacks.py): the app's stack holds
one AWS::CloudFormation::Stack per workflow (and the workflow's alarms), so CloudFormation's 500 resources per
stack no longer caps the number of workflows at about 43."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synth

WORKFLOW_TYPES = {"AWS::StepFunctions::StateMachine", "AWS::Events::Rule", "AWS::Scheduler::Schedule"}
MACHINE_LOGS = "/aws/vendedlogs/states/"


def root_resources(synth: Synth) -> dict[str, Any]:
    return json.loads(synth.template_file.read_text())["Resources"]  # type: ignore[no-any-return]


def test_the_apps_stack_holds_one_nested_stack_per_workflow_and_no_workflow_resource(focused: Synth) -> None:
    root = root_resources(focused)
    # the app's own rules (engine commands, escalations) live there; no workflow's trigger rule does
    assert sorted(r["Type"] for r in root.values() if r["Type"] in WORKFLOW_TYPES - {"AWS::Events::Rule"}) == []
    assert not [r for r in root.values() if r["Type"] == "AWS::Events::Rule"
                and str(r["Properties"].get("Description", "")).startswith("Starts ")]
    assert not [r for r in root.values() if r["Type"] == "AWS::Logs::LogGroup"
                and str(r["Properties"].get("LogGroupName", "")).startswith(MACHINE_LOGS)]
    nested = [r for r in root.values() if r["Type"] == "AWS::CloudFormation::Stack"]
    assert len(nested) == len(focused.stack.workflows) == 2
    assert len(focused.template_files) == 3


def test_each_nested_stack_holds_exactly_one_workflow(focused: Synth) -> None:
    machines = []
    for path in focused.template_files[1:]:
        resources = json.loads(path.read_text())["Resources"]
        names = [r["Properties"]["StateMachineName"] for r in resources.values()
                 if r["Type"] == "AWS::StepFunctions::StateMachine"]
        assert len(names) == 1, f"{path.name}: {names}"
        machines += names
        assert len(resources) < 50
    assert sorted(machines) == ["Focus_child", "Focus_parent"]


def test_per_workflow_the_apps_stack_grows_by_its_nested_stack_and_its_alarms_only(focused: Synth) -> None:
    root = root_resources(focused)
    per_workflow: dict[str, list[str]] = {wf: [] for wf in focused.stack.workflows}
    for logical_id, resource in root.items():
        owner = resource["Properties"].get("AlarmName", "") if resource["Type"] == "AWS::CloudWatch::Alarm" else \
            logical_id
        for wf in per_workflow:
            if f"Focus-{wf}-executions" in owner or (resource["Type"] == "AWS::CloudFormation::Stack"
                                                     and logical_id.startswith(f"Workflows{wf}")):
                per_workflow[wf].append(resource["Type"])
    for wf, types in per_workflow.items():
        assert types.count("AWS::CloudFormation::Stack") == 1, (wf, types)
        assert set(types) <= {"AWS::CloudFormation::Stack", "AWS::CloudWatch::Alarm"}, (wf, types)
        assert len(types) <= 4, (wf, types)


def test_the_outputs_name_the_nested_state_machines(focused: Synth) -> None:
    """``WorkflowArns`` (read by ``coafi deploy``) resolves to each nested stack's state machine."""
    outputs = focused.template.to_json()["Outputs"]
    arns = json.dumps(outputs["WorkflowArns"]["Value"])
    for wf in ("parent", "child"):
        machine_id = next(k for k, r in focused.resources.items() if r["Type"] == "AWS::StepFunctions::StateMachine"
                          and r["Properties"]["StateMachineName"] == f"Focus_{wf}")
        assert json.dumps({"Ref": machine_id}) in arns
