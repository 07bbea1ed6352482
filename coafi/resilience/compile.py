"""Error policies compiled into a step's ``Retry`` and ``Catch`` (called by ``coafi.compiler.asl``).

For each step, the policies that apply to it (``contextTypes``), in the definition's order, add one retrier each
after the step's own retriers (Lambda service errors, then ``retryPolicy``, which win for the errors they name):

- a policy with ``retry``: ``MaxAttempts = maxRetries``, ``IntervalSeconds``/``BackoffRate``/``MaxDelaySeconds``
  from ``retryStrategy``, ``JitterStrategy FULL`` unless ``jitter: none`` (exponential backoff, full jitter);
- a policy without: ``MaxAttempts 0``, so a later, broader retrier (``States.ALL``) never retries these errors.
  Permanent errors are never retried: before a retrier of ``States.ALL``, a ``MaxAttempts 0`` retrier of the
  permanent names is added.

Each error name is matched by the first policy naming it (Step Functions uses the first retrier that matches).
A policy with ``continue`` on a task step adds a ``Catch`` of its errors: the error goes to ``$.steps.<id>``
(``{"Error", "Cause"}``, no ``output``) and the workflow continues with the step's successors.
A task step's policies are passed to the action in the step event (``context.errorPolicies``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coafi.resilience.classification import ErrorCategory, names_of
from coafi.resilience.policies import ALL_ERRORS, ErrorPolicy

if TYPE_CHECKING:
    from coafi.definitions.models import WorkflowDefinition, WorkflowStep

CONTINUE_SUFFIX = ".continue"


def resolved_policies(definition: WorkflowDefinition) -> list[ErrorPolicy]:
    """The definition's policies that are resolved (ids are resolved by the loader: ``load_definition``)."""
    return [p for p in definition.policies if isinstance(p, ErrorPolicy)]


def step_policies(definition: WorkflowDefinition, step: WorkflowStep) -> list[ErrorPolicy]:
    """The policies that apply to ``step``, in the definition's order (waits and decisions have none)."""
    if step.type not in ("task", "subworkflow"):
        return []
    return [p for p in resolved_policies(definition)
            if p.applies_to(step_id=step.id, step_type=step.type, action=step.action)]


def _covered(retriers: list[dict[str, Any]]) -> set[str]:
    return {name for r in retriers for name in r["ErrorEquals"]}


def policy_retriers(definition: WorkflowDefinition, step: WorkflowStep,
                    retriers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``retriers`` (the step's own) followed by those of its error policies."""
    policies = step_policies(definition, step)
    covered = _covered(retriers)
    if not policies or ALL_ERRORS in covered:
        return retriers
    added: list[dict[str, Any]] = []
    for policy in policies:
        names = [n for n in policy.error_names if n not in covered]
        if not names:
            continue
        covered.update(names)
        if names == [ALL_ERRORS] and policy.retries:
            permanent = [n for n in names_of(ErrorCategory.PERMANENT) if n not in covered]
            if permanent:
                added.append({"ErrorEquals": permanent, "MaxAttempts": 0})
        added.append(retrier(policy, names))
        if ALL_ERRORS in names:
            break  # States.ALL must be the last retrier; later policies could never match
    return [*retriers, *added]


def retrier(policy: ErrorPolicy, names: list[str]) -> dict[str, Any]:
    if not policy.retries:
        return {"ErrorEquals": names, "MaxAttempts": 0}
    strategy = policy.retryStrategy
    out: dict[str, Any] = {
        "ErrorEquals": names,
        "IntervalSeconds": strategy.intervalSeconds,
        "MaxAttempts": policy.maxRetries,
        "BackoffRate": strategy.rate,
        "JitterStrategy": "FULL" if strategy.jitter == "full" else "NONE",
    }
    if strategy.maxDelaySeconds is not None:
        out["MaxDelaySeconds"] = strategy.maxDelaySeconds
    return out


def policy_catchers(definition: WorkflowDefinition, step: WorkflowStep) -> list[dict[str, Any]]:
    """The ``Catch`` of a task step whose policies say ``continue`` (empty when none do)."""
    if step.type != "task":
        return []
    catchers: list[dict[str, Any]] = []
    covered: set[str] = set()
    for policy in step_policies(definition, step):
        names = [n for n in policy.error_names if n not in covered]
        covered.update(names)
        if names and "continue" in policy.actions:
            catchers.append({"ErrorEquals": names, "ResultPath": f"$.steps.{step.id}",
                             "Next": step.id + CONTINUE_SUFFIX})
        if ALL_ERRORS in covered:
            break
    return catchers


def continue_states(definition: WorkflowDefinition, step: WorkflowStep, state: dict[str, Any]
                    ) -> dict[str, dict[str, Any]]:
    """Adds the step's policy ``Catch`` to ``state`` and returns the states it needs (``<id>.continue``, a Pass
    that joins the step's successors), to be added to the step's fragment as a second end."""
    catchers = policy_catchers(definition, step)
    if not catchers:
        return {}
    state["Catch"] = [*state.get("Catch", []), *catchers]
    return {step.id + CONTINUE_SUFFIX: {
        "Type": "Pass", "Comment": f"{step.name} failed; an error policy says continue (error in $.steps.{step.id})",
    }}


def escalation_context(definition: WorkflowDefinition, step: WorkflowStep) -> dict[str, Any]:
    """What the action wrapper needs (``context.errorPolicies`` of the step event), or nothing: the step's policies
    (``{id, errorTypes, attempts}``, ``attempts`` = the escalation threshold or null), then the names its
    ``retryPolicy`` retries (``{"id": "retryPolicy", "errorTypes": [...], "attempts": null}``), so the wrapper can
    escalate, and can report an error that Step Functions would not recognise by name under its category's name
    (``coafi.resilience.runtime``)."""
    policies = step_policies(definition, step)
    if step.type != "task" or not policies:
        return {}
    entries: list[dict[str, Any]] = []
    for p in policies:
        threshold = p.escalationThreshold if "escalate" in p.actions else None
        entry: dict[str, Any] = {"id": p.id, "errorTypes": list(p.errorTypes),
                                 "attempts": threshold.attempts if threshold else None}
        if threshold is not None and threshold.failures is not None:
            entry.update(failures=threshold.failures, windowSeconds=threshold.windowSeconds)
        entries.append(entry)
    if step.retryPolicy is not None and step.retryPolicy.retryOn:
        entries.append({"id": "retryPolicy", "errorTypes": list(step.retryPolicy.retryOn), "attempts": None})
    return {"errorPolicies": entries}
