"""Fixed names of a stack's state machines and action functions, and how COAFI's functions find them.

Lambda limits a function's environment to 4 KB (its variables as JSON), so the functions that start workflows or
invoke actions (the engine API, the task dispatcher) do not get maps of ARNs or function names: every state
machine is named ``<stack>_<workflow id>`` and every action function ``<stack>_action-<action>``, so they get the
ids (``COAFI_WORKFLOW_IDS``, ``COAFI_ACTIONS``: comma-separated) and one prefix each
(``COAFI_STATE_MACHINE_ARN_PREFIX``: ``arn:<partition>:states:<region>:<account>:stateMachine:<stack>_``;
``COAFI_ACTION_FUNCTION_PREFIX``: ``<stack>_action-``) and derive the rest (``workflow_arns``,
``action_functions``). ``infra/constructs`` names the resources with the same functions.

The same prefixes scope the IAM grants on "all of this app's state machines / action functions" (``<stack>_*``,
``<stack>_action-*``: one resource whatever the number of workflows, IAM's policy size limits). The separator is
``_`` because no stack name holds one (CloudFormation allows letters, digits and ``-`` only): the first ``_`` of a
name ends its stack's name, so ``Coafi_*`` never matches a resource of stack ``Coafi-dev`` (``Coafi-dev_...``),
which ``Coafi-*`` would.

Imported by the functions at cold start: nothing here imports more than the standard library's ``re``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

#: Step Functions and Lambda name limits.
MAX_STATE_MACHINE_NAME = 80
MAX_FUNCTION_NAME = 64
FUNCTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

WORKFLOW_IDS_ENV = "COAFI_WORKFLOW_IDS"
STATE_MACHINE_ARN_PREFIX_ENV = "COAFI_STATE_MACHINE_ARN_PREFIX"
ACTIONS_ENV = "COAFI_ACTIONS"
ACTION_FUNCTION_PREFIX_ENV = "COAFI_ACTION_FUNCTION_PREFIX"
SEPARATOR = ","
#: Between the stack name and the rest of a resource name; no stack name may hold it.
STACK_SEPARATOR = "_"
STACK_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")  # CloudFormation's stack names


def _stack_prefix(stack_name: str) -> str:
    if not STACK_NAME_PATTERN.match(stack_name):
        raise ValueError(f"stack name {stack_name!r}: CloudFormation allows letters, digits and '-', starting with a "
                         f"letter; COAFI's resource names and IAM grants rely on it holding no {STACK_SEPARATOR!r}")
    return stack_name + STACK_SEPARATOR


def state_machine_prefix(stack_name: str) -> str:
    """``<stack>_``: what every state machine of the stack is named with, and no other stack's."""
    return _stack_prefix(stack_name)


def state_machine_name(stack_name: str, workflow_id: str) -> str:
    """``<stack>_<workflow id>`` (the caller checks the 80-character limit: infra/constructs/workflow.py)."""
    return state_machine_prefix(stack_name) + workflow_id


def state_machine_arn(partition: str, region: str, account: str, name: str) -> str:
    return f"arn:{partition}:states:{region}:{account}:stateMachine:{name}"


def action_function_prefix(stack_name: str) -> str:
    """``<stack>_action-``: what every action function of the stack is named with, and no other stack's."""
    return _stack_prefix(stack_name) + "action-"


def action_function_name(stack_name: str, action: str) -> str:
    """``<stack>_action-<action>``; ValueError (naming the action, the name and the limit) if Lambda refuses it."""
    name = action_function_prefix(stack_name) + action
    if not FUNCTION_NAME_PATTERN.match(name):
        raise ValueError(f"action '{action}': its function name '{name}' may only hold letters, digits, '-' and "
                         "'_' (Lambda function names); rename the folder functions/actions/" + action)
    if len(name) > MAX_FUNCTION_NAME:
        raise ValueError(f"action '{action}': its function name '{name}' is {len(name)} characters, Lambda allows "
                         f"{MAX_FUNCTION_NAME}; shorten the folder name functions/actions/{action} or the stack "
                         "name (context coafi:stackName)")
    return name


def join_names(names: Iterable[str]) -> str:
    """The comma-separated, sorted list an environment variable holds."""
    values = sorted(names)
    bad = [n for n in values if not n or SEPARATOR in n]
    if bad:
        raise ValueError(f"names in a {SEPARATOR!r}-separated list must be non-empty and hold no {SEPARATOR!r}: "
                         f"{bad}")
    return SEPARATOR.join(values)


def split_names(text: str | None) -> list[str]:
    return [n for n in (text or "").split(SEPARATOR) if n]


def _prefixed(env: Mapping[str, str], names_key: str, prefix_key: str) -> dict[str, str]:
    names = split_names(env.get(names_key))
    if not names:
        return {}
    prefix = env.get(prefix_key)
    if prefix is None:
        raise ValueError(f"{names_key} lists {len(names)} names but {prefix_key} is not set")
    return {name: prefix + name for name in names}


def workflow_arns(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Workflow id -> state machine ARN of the stack's workflows (``COAFI_WORKFLOW_IDS`` and
    ``COAFI_STATE_MACHINE_ARN_PREFIX``; default: the process environment)."""
    return _prefixed(os.environ if env is None else env, WORKFLOW_IDS_ENV, STATE_MACHINE_ARN_PREFIX_ENV)


def action_functions(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Action name -> function name of the stack's actions (``COAFI_ACTIONS`` and
    ``COAFI_ACTION_FUNCTION_PREFIX``; default: the process environment)."""
    return _prefixed(os.environ if env is None else env, ACTIONS_ENV, ACTION_FUNCTION_PREFIX_ENV)
