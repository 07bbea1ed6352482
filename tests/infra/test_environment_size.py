"""Lambda refuses, at deploy, a function whose environment exceeds 4 KB (its variables as JSON). The app keeps every
function under it for as many workflows as it can hold (99: the dashboard's widgets) and 100 actions, and a synth
fails naming the function and its largest variables when one would not fit (infra.env_size).

An app cannot hold 99 workflows and 100 actions at once (each action function brings 7 resources to the app's
stack, CloudFormation allows 500), so the 99 workflows run on the sample's six actions and the dispatcher's
environment is sized with 100 action names on top of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml

from bench.synth import ACTIONS, workflow_definition
from coafi import naming
from infra.config import CoafiConfig
from infra.constructs.function import CoafiFunction
from infra.env_size import MAX_ENVIRONMENT_BYTES, PARTITION, REGION, environment_size
from infra.stack import CoafiStack
from tests.infra.conftest import CDK_CONTEXT, LARGE_WORKFLOWS, project_context, write_project

WORKFLOWS = LARGE_WORKFLOWS
ACTION_COUNT = 100


def _app(root: Path, outdir: Path, **context: Any) -> tuple[cdk.App, CoafiStack]:
    app = cdk.App(context={**CDK_CONTEXT, **project_context(root, **context)}, outdir=str(outdir))
    config = CoafiConfig.from_context(app.node)
    return app, CoafiStack(app, config.stack_name, config=config)


def _functions(stack: CoafiStack) -> list[CoafiFunction]:
    return [c for c in stack.node.find_all() if isinstance(c, CoafiFunction)]


def _render(value: Any) -> str:
    """A synthesized value in a region/account of the longest kind (what the function reads once deployed)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(p) for p in parts)
    pseudo = {"AWS::Partition": "aws-us-gov", "AWS::Region": "us-gov-west-1", "AWS::AccountId": "123456789012"}
    return pseudo.get(value.get("Ref", ""), "<resource>")


def test_every_function_of_a_99_workflow_app_fits_lambdas_4_kb_and_the_dispatcher_100_actions_more(
        large: tuple[CoafiStack, dict[str, Any]]) -> None:
    stack, _ = large
    functions = _functions(stack)
    assert len(functions) >= len(ACTIONS) + 5
    sizes = {f.node.path: environment_size(stack, f.environment).total for f in functions}
    assert max(sizes.values()) <= MAX_ENVIRONMENT_BYTES, sizes
    # the dispatcher, the only function that names actions, with 100 of them (20 characters each)
    environment = dict(stack.tasks.dispatcher.environment)
    environment[naming.ACTIONS_ENV] = naming.join_names(f"generated-action-{i:03d}" for i in range(ACTION_COUNT))
    assert environment_size(stack, environment).total <= MAX_ENVIRONMENT_BYTES


def test_the_api_and_the_dispatcher_derive_each_workflows_arn_and_each_actions_function(
        large: tuple[CoafiStack, dict[str, Any]]) -> None:
    stack, template = large
    functions = {r["Properties"]["Description"]: r["Properties"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function"}
    for description in ("COAFI engine API of Coafi: commands and event triggers",
                        "COAFI task dispatcher of Coafi: runs queued tasks"):
        variables = {k: _render(v) for k, v in functions[description]["Environment"]["Variables"].items()}
        arns = naming.workflow_arns(variables)
        assert sorted(arns) == sorted(stack.workflows) and len(arns) == WORKFLOWS
        assert arns["bench-007"] == "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:Coafi_bench-007"
        assert not [k for k, v in variables.items() if v.startswith("{")], "no JSON maps any more"
    variables = {k: _render(v) for k, v in functions["COAFI task dispatcher of Coafi: runs queued tasks"]
                 ["Environment"]["Variables"].items()}
    deployed = {p["FunctionName"] for p in functions.values() if "FunctionName" in p}
    action_functions = naming.action_functions(variables)
    assert sorted(action_functions) == sorted(ACTIONS)
    assert set(action_functions.values()) == deployed  # every name it derives is one of the app's actions
    assert action_functions["generate-content"] == "Coafi_action-generate-content"


def test_the_registrar_gets_what_to_register_from_its_requests_not_its_environment(
        large: tuple[CoafiStack, dict[str, Any]]) -> None:
    stack, _ = large
    environment = stack.engine.registrar.environment if stack.engine.registrar else {}
    assert "COAFI_DEPLOYED_WORKFLOWS" not in environment
    assert not [k for k, v in environment.items() if "bench-" in json.dumps(stack.resolve(v))]


def test_a_token_counts_at_its_longest(large: tuple[CoafiStack, dict[str, Any]]) -> None:
    stack, _ = large
    prefix = stack.tasks.dispatcher.environment[naming.STATE_MACHINE_ARN_PREFIX_ENV]
    size = environment_size(stack, {"P": prefix})
    longest = f"arn:{'p' * PARTITION}:states:{'r' * REGION}:123456789012:stateMachine:Coafi_"
    assert size.total == len(json.dumps({"P": longest}, separators=(",", ":")))


def test_an_environment_over_4_kb_fails_the_synth_naming_the_function_and_its_largest_variables(
        tmp_path: Path) -> None:
    root = write_project(tmp_path / "project", {"one.yaml": yaml.safe_dump(workflow_definition(0))},
                         actions=ACTIONS)
    app, stack = _app(root, tmp_path / "cdk")
    api = stack.engine.api.function
    api.add_environment("BIG_SETTING", "x" * 3300)
    api.add_environment("TABLE_AGAIN", stack.core.table.table_name)  # a token: 255 characters at worst
    with pytest.raises(Exception, match="over Lambda's 4096-byte limit") as raised:
        app.synth()
    message = str(raised.value)
    assert "Coafi/Engine/Api" in message and "COAFI engine API of Coafi" in message
    found = re.search(r"may take (\d+) bytes", message)
    assert found is not None and int(found.group(1)) > MAX_ENVIRONMENT_BYTES
    assert re.search(r"largest: BIG_SETTING \(33\d\d bytes\), COAFI_TABLE_NAME \(\d+ bytes\)", message), message


def test_an_action_whose_function_name_would_exceed_64_characters_fails_the_synth_naming_its_folder(
        tmp_path: Path) -> None:
    long_action = "a-very-long-action-name-that-does-not-fit-lambdas-limit"
    root = write_project(tmp_path / "project", {}, actions=(long_action,))
    with pytest.raises(ValueError, match=rf"functions/actions/{long_action}: .* is 68 characters, Lambda allows 64"):
        _app(root, tmp_path / "cdk")


