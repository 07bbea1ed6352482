"""IAM refuses, at deploy, a role whose inline policies exceed 10,240 characters and a managed policy over 6,144.
Roles that reach all of the app's state machines or action functions name them by the stack's prefix, so every
role of an app with 99 workflows fits, with the same policies as an app with one; a synth fails naming the role
and its largest statements when one would not fit (infra.iam_size)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_iam as iam

from bench.synth import ACTIONS, workflow_definition
from infra.config import CoafiConfig
from infra.iam_size import MAX_ROLE_INLINE_POLICIES, role_sizes
from infra.stack import CoafiStack
from tests.infra.conftest import CDK_CONTEXT, LARGE_WORKFLOWS, project_context, write_project

#: The roles that reach every workflow or action of the app.
APP_WIDE = ("Coafi/Engine/Api/Role", "Coafi/Engine/Registrar/Role", "Coafi/Tasks/Dispatcher/Role",
            "Coafi/Core/StateFunction/Role")


def _app(root: Path, outdir: Path) -> tuple[cdk.App, CoafiStack]:
    app = cdk.App(context={**CDK_CONTEXT, **project_context(root)}, outdir=str(outdir))
    config = CoafiConfig.from_context(app.node)
    return app, CoafiStack(app, config.stack_name, config=config)


def _sizes(stack: CoafiStack) -> dict[str, int]:
    return {role.node.scope.node.path if role.node.scope else role.node.path: size.total
            for role, size in role_sizes(stack)}


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> tuple[cdk.App, CoafiStack]:
    """The same app with one of the generated workflows (not synthesized)."""
    root = write_project(tmp_path_factory.mktemp("one-project"),
                         {"one.yaml": yaml.safe_dump(workflow_definition(0))}, actions=ACTIONS)
    return _app(root, tmp_path_factory.mktemp("cdk-one"))


def test_every_role_of_a_99_workflow_app_fits_and_the_app_wide_ones_do_not_grow(
        large: tuple[CoafiStack, dict[str, Any]], one: tuple[cdk.App, CoafiStack]) -> None:
    stack, template = large
    assert len(stack.workflows) == LARGE_WORKFLOWS
    sizes = _sizes(stack)
    assert len(sizes) > LARGE_WORKFLOWS  # the workflows' roles (nested stacks) are sized too
    assert max(sizes.values()) <= MAX_ROLE_INLINE_POLICIES, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    # no statement was moved into managed "OverflowPolicy"s by CDK: every policy is inline and fits
    assert not [k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert not [c for c in stack.node.find_all() if isinstance(c, iam.CfnManagedPolicy)]
    small = _sizes(one[1])
    for path in APP_WIDE:
        assert sizes[path] == small[path], f"{path}: {small[path]} characters with 1 workflow, {sizes[path]} with 99"


def test_a_role_whose_policies_could_exceed_10240_characters_fails_the_synth_naming_it_and_its_largest_statements(
        tmp_path: Path) -> None:
    root = write_project(tmp_path / "project", {"one.yaml": yaml.safe_dump(workflow_definition(0))},
                         actions=ACTIONS)
    app, stack = _app(root, tmp_path / "cdk")
    # 40 ARNs of the table: short as CDK writes them (CDK does not split the policy), ~330 characters each at
    # their longest (a 255-character table name in aws-us-gov)
    stack.engine.api.function.add_to_role_policy(iam.PolicyStatement(
        actions=["dynamodb:GetItem"], resources=[f"{stack.core.table.table_arn}/x{i}" for i in range(40)]))
    with pytest.raises(Exception, match="over IAM's 10240-character limit for a role") as raised:
        app.synth()
    message = str(raised.value)
    assert "role 'Runs COAFI engine API of Coafi: commands and event triggers' (Coafi/Engine/Api/Role)" in message
    found = re.search(r"may take (\d+) characters", message)
    assert found is not None and int(found.group(1)) > MAX_ROLE_INLINE_POLICIES
    assert re.search(r"largest statements: \S+ statement \d+: dynamodb:GetItem on 40 resource\(s\) \(\d{5} "
                     r"characters\)", message), message
    assert message.count("over IAM's") == 1  # no other role
