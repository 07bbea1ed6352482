"""Security bar of the synthesized template: IAM wildcards, cdk-nag AwsSolutions, cfn-lint."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from coafi import naming
from tests.infra.conftest import Synth, arn_text

#: Actions AWS defines without resource-level permissions: a statement granting ONLY these may use
#: Resource "*". Each is added by CDK itself, never by COAFI code.
AWS_MANDATED_STAR_RESOURCE = {
    # Lambda and Step Functions active tracing (X-Ray has no resource ARNs for these).
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    # Step Functions logging to CloudWatch Logs: log *delivery* APIs take no resource
    # (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy).
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

SYNTHS = ["sample", "focused"]


@pytest.fixture(params=SYNTHS)
def synth(request: pytest.FixtureRequest) -> Synth:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy statement anywhere in the template: identity, trust, queue, bus policies..."""
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list) and "Version" in node:
            for index, statement in enumerate(node["Statement"]):
                yield f"{where}.Statement[{index}]", statement
        for key, value in node.items():
            yield from _statements(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _statements(value, f"{where}[{index}]")


def _in_key_policy(resources: dict[str, Any], where: str) -> bool:
    """Whether the statement at ``where`` (from ``_statements``) is in an AWS::KMS::Key's KeyPolicy."""
    parts = where.split(".")
    return resources[parts[1]]["Type"] == "AWS::KMS::Key" and parts[2:4] == ["Properties", "KeyPolicy"]


def test_the_walk_finds_the_policies(sample: Synth) -> None:
    found = list(_statements(sample.resources, "Resources"))
    assert len(found) > 20
    assert any(".AssumeRolePolicyDocument." in where for where, _ in found)
    assert any("QueuePolicy" in sample.resources[where.split(".")[1]]["Type"] for where, _ in found)


def test_no_wildcard_action_or_resource_in_any_allow_statement(synth: Synth) -> None:
    problems: list[str] = []
    for where, statement in _statements(synth.resources, "Resources"):
        if statement.get("Effect") != "Allow":
            continue  # Deny statements (SSL-only queue policies: sqs:* for Principal *) only narrow access
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{where}: NotAction/NotResource in an Allow statement")
        actions = _as_list(statement.get("Action", []))
        for action in actions:
            if action == "*" or (isinstance(action, str) and action.endswith(":*")):
                problems.append(f"{where}: wildcard action {action!r}")
        principal = statement.get("Principal")
        if principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS", []))):
            problems.append(f"{where}: Allow for Principal '*'")
        if "*" in _as_list(statement.get("Resource", [])):
            if _in_key_policy(synth.resources, where):
                # in a key policy "*" means "this key" (its ARN does not exist while the policy is written)
                unexpected = sorted(a for a in actions if not str(a).startswith("kms:"))
            else:
                unexpected = sorted(set(actions) - AWS_MANDATED_STAR_RESOURCE)
            if unexpected:
                problems.append(f"{where}: Resource '*' for {unexpected}")
    assert not problems, "\n".join(problems)


#: The name part of a state machine, execution or function ARN.
_NAMED = re.compile(r":(?:states|lambda):<AWS::Region>:<AWS::AccountId>:(stateMachine|execution|function):(.*)$")


def test_wildcards_on_state_machines_executions_and_functions_are_scoped_to_the_stacks_prefix(synth: Synth) -> None:
    """A pattern naming state machines, executions or functions reaches only this stack's (``<stack>_...``): stack
    names hold no "_", so no other stack's names start with it (coafi.naming)."""
    prefix = naming.state_machine_prefix(synth.stack.config.stack_name)
    patterns: list[str] = []
    for where, statement in _statements(synth.resources, "Resources"):
        for resource in _as_list(statement.get("Resource", [])):
            found = _NAMED.search(arn_text(resource))
            if found and "*" in found.group(2):
                patterns.append(found.group(2))
                assert found.group(2).startswith(prefix) and "*" not in found.group(2)[:len(prefix)], (
                    f"{where}: {arn_text(resource)} is not scoped to the stack's prefix {prefix!r}")
                assert not fnmatch.fnmatchcase(f"{synth.stack.config.stack_name}-dev{found.group(2)[len(prefix) - 1:]}",
                                               found.group(2))
    assert f"{prefix}*" in patterns  # the app-wide grants (engine API, dispatcher, registrar, state function)


def test_cdk_nag_aws_solutions_has_no_unsuppressed_findings(synth: Synth) -> None:
    annotations = Annotations.from_stack(synth.stack)
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    warnings = annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert not errors, "\n".join(f"{e.id}: {e.entry.data}" for e in errors)
    assert not warnings, "\n".join(f"{w.id}: {w.entry.data}" for w in warnings)


def test_cdk_nag_suppressions_are_narrow(synth: Synth) -> None:
    seen = 0
    for logical_id, resource in synth.resources.items():
        for suppression in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            seen += 1
            assert len(suppression["reason"]) >= 40, f"{logical_id}: {suppression['id']} needs a real reason"
            if suppression["id"] == "AwsSolutions-IAM5":
                # an IAM5 suppression always names the exact findings it hides
                assert suppression.get("applies_to"), f"{logical_id}: blanket IAM5 suppression"
                for finding in suppression["applies_to"]:
                    assert isinstance(finding, str), f"{logical_id}: IAM5 by regex: {finding}"
            assert resource["Type"] in (
                "AWS::IAM::Policy", "AWS::IAM::Role", "AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"
            ), f"{logical_id}: unexpected suppression on {resource['Type']}"
    assert seen


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", *map(str, synth.template_files)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
