"""How large a role's IAM policies can get once deployed, checked when the app is synthesized.

IAM limits the inline policies of a role to 10,240 characters in total and a managed policy to 6,144 (whitespace
not counted), and says so only at deploy. ``policy_problems`` sizes every policy of a stack and of its nested
stacks from the synthesized documents, as compact JSON with CloudFormation tokens at their longest
(``infra.env_size.TokenEstimator``: a function ARN with a 64-character name in partition ``aws-us-gov``, ...),
and names each role whose inline policies, or each managed policy, could exceed its limit, with the largest
statements. ``RolePoliciesFit`` fails the synth with those problems (``infra/stack.py``).

COAFI's roles stay far below the limits whatever the number of workflows and actions: a role that reaches the
app's state machines or action functions names them by the stack's fixed-name prefix (``coafi.naming``), one
resource, not one ARN per workflow (docs/ARCHITECTURE.md, "IAM").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsii
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct, IValidation

from infra.env_size import TokenEstimator

#: IAM's limits, in characters without whitespace.
MAX_ROLE_INLINE_POLICIES = 10_240
MAX_MANAGED_POLICY = 6_144


def _is_intrinsic(value: dict[str, Any]) -> bool:
    if len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key == "Ref" or key.startswith("Fn::")


def json_length(estimator: TokenEstimator, value: Any) -> int:
    """Characters of ``value`` as compact JSON once deployed, tokens at their longest (``estimator``)."""
    if isinstance(value, dict):
        if _is_intrinsic(value):
            return estimator.length(value) + 2  # a token always stands for a string here
        items = [estimator.literal(str(k)) + 3 + json_length(estimator, v) for k, v in value.items()]
        return 2 + sum(items) + max(len(items) - 1, 0)
    if isinstance(value, list):
        parts = [json_length(estimator, v) for v in value]
        return 2 + sum(parts) + max(len(parts) - 1, 0)
    if isinstance(value, str):
        return estimator.literal(value) + 2
    return len(json.dumps(value))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


@dataclass
class PolicySize:
    """A policy's (or a role's policies') worst-case size, and each statement's."""

    total: int = 0
    statements: list[tuple[int, str]] = field(default_factory=list)

    def add(self, estimator: TokenEstimator, policy_name: str, document: Any) -> None:
        self.total += json_length(estimator, document)
        for index, statement in enumerate(_as_list(document.get("Statement")) if isinstance(document, dict) else []):
            self.statements.append((json_length(estimator, statement), _describe(policy_name, index, statement)))

    def largest(self, count: int = 3) -> list[tuple[int, str]]:
        return sorted(self.statements, key=lambda s: (-s[0], s[1]))[:count]


def _describe(policy_name: str, index: int, statement: Any) -> str:
    if not isinstance(statement, dict):
        return f"{policy_name} statement {index}"
    actions = ", ".join(str(a) for a in _as_list(statement.get("Action")))
    resources = len(_as_list(statement.get("Resource")))
    sid = f" ({statement['Sid']})" if statement.get("Sid") else ""
    return f"{policy_name} statement {index}{sid}: {actions} on {resources} resource(s)"


def _stacks(root: Stack) -> Iterator[Stack]:
    yield root
    for construct in root.node.find_all():
        if isinstance(construct, Stack) and construct is not root and construct.nested_stack_parent is not None:
            yield construct


def _own(stack: Stack, kind: type[Any]) -> list[Any]:
    return [c for c in stack.node.find_all() if isinstance(c, kind) and Stack.of(c) is stack]


def _role_label(role: iam.CfnRole) -> str:
    description = Stack.of(role).resolve(role.description)
    return f"'{description}' ({_path(role)})" if isinstance(description, str) else f"'{_path(role)}'"


def _summary(size: PolicySize) -> str:
    return "; ".join(f"{text} ({n} characters)" for n, text in size.largest())


def _path(construct: IConstruct) -> str:
    """The path of the L2 construct a CloudFormation resource belongs to (``.../Role``, not ``.../Role/Resource``)."""
    scope = construct.node.scope
    return scope.node.path if scope is not None else construct.node.path


def role_sizes(root: Stack) -> list[tuple[iam.CfnRole, PolicySize]]:
    """Every role of ``root`` and its nested stacks with the worst-case size of its inline policies: its own
    ``Policies`` and every ``AWS::IAM::Policy`` of its stack attached to it."""
    result: list[tuple[iam.CfnRole, PolicySize]] = []
    for stack in _stacks(root):
        estimator = TokenEstimator.of(stack)
        roles = {str(stack.resolve(r.logical_id)): r for r in _own(stack, iam.CfnRole)}
        sizes = {logical_id: PolicySize() for logical_id in roles}
        for logical_id, role in roles.items():
            for inline in _as_list(stack.resolve(role.policies)):
                if isinstance(inline, dict):
                    sizes[logical_id].add(estimator, str(inline.get("PolicyName")), inline.get("PolicyDocument"))
        for policy in _own(stack, iam.CfnPolicy):
            document = stack.resolve(policy.policy_document)
            for ref in _as_list(stack.resolve(policy.roles)):
                if isinstance(ref, dict) and ref.get("Ref") in sizes:
                    sizes[ref["Ref"]].add(estimator, _path(policy), document)
        result.extend((roles[logical_id], size) for logical_id, size in sorted(sizes.items()))
    return result


def managed_policy_sizes(root: Stack) -> list[tuple[iam.CfnManagedPolicy, PolicySize]]:
    result: list[tuple[iam.CfnManagedPolicy, PolicySize]] = []
    for stack in _stacks(root):
        estimator = TokenEstimator.of(stack)
        for managed in _own(stack, iam.CfnManagedPolicy):
            size = PolicySize()
            size.add(estimator, _path(managed), stack.resolve(managed.policy_document))
            result.append((managed, size))
    return result


def policy_problems(root: Stack) -> list[str]:
    """Each role of ``root`` and its nested stacks whose inline policies, and each managed policy, that could
    exceed IAM's limits once deployed."""
    problems: list[str] = []
    for role, size in role_sizes(root):
        if size.total > MAX_ROLE_INLINE_POLICIES:
            problems.append(
                f"the inline policies of role {_role_label(role)} may take {size.total} characters once deployed "
                f"(whitespace not counted, tokens at their longest), over IAM's {MAX_ROLE_INLINE_POLICIES}-character "
                f"limit for a role; largest statements: {_summary(size)}")
    for managed, size in managed_policy_sizes(root):
        if size.total > MAX_MANAGED_POLICY:
            stack = Stack.of(managed)
            roles = {str(stack.resolve(r.logical_id)): r for r in _own(stack, iam.CfnRole)}
            attached = [_role_label(roles[ref["Ref"]]) for ref in _as_list(stack.resolve(managed.roles))
                        if isinstance(ref, dict) and ref.get("Ref") in roles]
            problems.append(
                f"managed policy '{_path(managed)}' (of role {', '.join(attached) or 'none'}) may take {size.total} "
                f"characters once deployed (whitespace not counted, tokens at their longest), over IAM's "
                f"{MAX_MANAGED_POLICY}-character limit; largest statements: {_summary(size)}")
    return problems


@jsii.implements(IValidation)
class RolePoliciesFit:
    """Fails the synth when a role's inline policies or a managed policy may exceed IAM's size limits."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def validate(self) -> list[str]:
        return policy_problems(self.stack)
