"""Finding what to deploy: definition files, build order of sub-workflows, clear errors naming files."""

from __future__ import annotations

from pathlib import Path

import pytest

from coafi.definitions import DefinitionError
from infra.config import CoafiConfig, ConfigError
from infra.discovery import WorkflowReferenceError, definition_files, discover_actions, load_workflows
from tests.infra.conftest import write_project

ACTIONS = {"echo", "store", "unused"}


def _definition(workflow_id: str, child: str | None = None) -> str:
    step = (f"  - id: run\n    type: subworkflow\n    action: {child}\n" if child
            else "  - id: run\n    action: echo\n")
    return f'id: {workflow_id}\nname: {workflow_id}\nversion: "1"\nsteps:\n{step}'


def test_definition_files_are_yaml_yml_json_not_recursive(focused_project: Path) -> None:
    names = [p.name for p in definition_files(focused_project / "statemachines")]
    assert names == ["a-parent.yaml", "b-child.yml"]
    assert definition_files(focused_project / "missing") == []


def test_actions_are_folders_with_a_handler(focused_project: Path) -> None:
    assert set(discover_actions(focused_project / "functions" / "actions")) == ACTIONS


def test_children_are_built_before_their_parents(focused_project: Path) -> None:
    order = [wf.id for wf in load_workflows(focused_project / "statemachines", ACTIONS)]
    assert order == ["child", "parent"]


def test_missing_subworkflow_names_the_file_and_the_folder(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"main.yaml": _definition("main", child="ghost")})
    with pytest.raises(WorkflowReferenceError) as info:
        load_workflows(root / "statemachines", ACTIONS)
    message = str(info.value)
    assert "main.yaml" in message and "'ghost'" in message and str(root / "statemachines") in message


def test_circular_subworkflows_name_both_files(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"one.yaml": _definition("one", child="two"),
                                    "two.yaml": _definition("two", child="one")})
    with pytest.raises(WorkflowReferenceError, match="cycle") as info:
        load_workflows(root / "statemachines", ACTIONS)
    assert "one.yaml" in str(info.value) and "two.yaml" in str(info.value)


def test_duplicate_workflow_id_names_both_files(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"a.yaml": _definition("same"), "b.yaml": _definition("same")})
    with pytest.raises(WorkflowReferenceError) as info:
        load_workflows(root / "statemachines", ACTIONS)
    assert "a.yaml" in str(info.value) and "b.yaml" in str(info.value)


def test_invalid_definitions_are_reported_together(tmp_path: Path) -> None:
    root = write_project(tmp_path, {
        "bad-action.yaml": 'id: bad\nname: b\nversion: "1"\nsteps:\n  - id: s\n    action: nosuchaction\n',
        "bad-id.yaml": 'id: Bad_Id\nname: b\nversion: "1"\nsteps:\n  - id: s\n    action: echo\n',
    })
    with pytest.raises(DefinitionError) as info:
        load_workflows(root / "statemachines", ACTIONS)
    files = {Path(p.file).name for p in info.value.problems}
    assert files == {"bad-action.yaml", "bad-id.yaml"}


def test_config_from_context_validates_values() -> None:
    import aws_cdk as cdk

    def config(**context: object) -> CoafiConfig:
        return CoafiConfig.from_context(cdk.App(context={f"coafi:{k}": v for k, v in context.items()}).node)

    assert config().stack_name == "Coafi"
    assert config(retainData="true").retain_data is True
    assert config(retainData=False).retain_data is False
    assert config(definitionsDir="/abs/defs").definitions_dir == Path("/abs/defs")
    with pytest.raises(ConfigError, match="coafi:stackName"):
        config(stackName="bad name")
    with pytest.raises(ConfigError, match="coafi:retainData"):
        config(retainData="maybe")
    with pytest.raises(ConfigError, match="coafi:functionLogLevel"):
        config(functionLogLevel="LOUD")
