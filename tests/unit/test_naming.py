"""Fixed names of a stack's state machines and action functions: ``<stack>_...``, so that a grant on the stack's
prefix never reaches another stack's resources (docs/ARCHITECTURE.md, "IAM")."""

from __future__ import annotations

import fnmatch

import pytest

from coafi import naming


def test_names_start_with_the_stack_and_an_underscore() -> None:
    assert naming.state_machine_name("Coafi", "orders") == "Coafi_orders"
    assert naming.action_function_name("Coafi", "generate-content") == "Coafi_action-generate-content"


@pytest.mark.parametrize("other", ["Coafi-dev", "Coafi-", "CoafiX", "Coafi-action"])
def test_a_stacks_prefix_pattern_matches_none_of_another_stacks_names(other: str) -> None:
    machines = naming.state_machine_prefix("Coafi") + "*"
    functions = naming.action_function_prefix("Coafi") + "*"
    for workflow in ("orders", "dev-orders", "action-x"):
        assert not fnmatch.fnmatchcase(naming.state_machine_name(other, workflow), machines)
    assert not fnmatch.fnmatchcase(naming.action_function_name(other, "echo"), functions)
    assert fnmatch.fnmatchcase(naming.state_machine_name("Coafi", "dev-orders"), machines)
    assert fnmatch.fnmatchcase(naming.action_function_name("Coafi", "echo"), functions)


@pytest.mark.parametrize("stack", ["Coafi_dev", "1coafi", "", "with space"])
def test_a_stack_name_cloudformation_refuses_is_refused(stack: str) -> None:
    with pytest.raises(ValueError, match="letters, digits and '-'"):
        naming.state_machine_prefix(stack)
