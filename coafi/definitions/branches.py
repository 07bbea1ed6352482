"""Which steps belong to which branch of a decision step.

A decision routes to one of its branches. A branch holds the steps named in its ``next`` (its targets) and,
transitively, every step whose dependencies all lie in that branch (or upstream of the decision). Those
steps run only when the branch is taken and are recorded SKIPPED otherwise. A step that depends on steps
of several branches, or on a branch step and something outside the branch, is a join: it runs after the
decision's branch finishes, whichever branch ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from coafi.definitions.graph import ancestors, topological_order
from coafi.definitions.models import WorkflowStep


@dataclass
class Branch:
    label: str
    targets: list[str]
    members: set[str] = field(default_factory=set)


@dataclass
class DecisionLayout:
    decision: str
    branches: list[Branch]

    @property
    def all_members(self) -> set[str]:
        return set().union(*(b.members for b in self.branches))


@dataclass
class BranchIssue:
    step: str
    path: str
    message: str


def branch_labels(step: WorkflowStep) -> list[tuple[str, list[str]]]:
    params = step.decision
    labelled = [(f"choice-{i + 1}", choice.next) for i, choice in enumerate(params.choices)]
    labelled.append(("default", params.default))
    return labelled


def analyse_decisions(
    steps: list[WorkflowStep], deps: Mapping[str, list[str]]
) -> tuple[dict[str, DecisionLayout], list[BranchIssue]]:
    """Branch membership for every decision, and every rule a decision's branches break.

    ``deps`` must be acyclic and hold only known ids.
    """
    if not any(s.type == "decision" for s in steps):
        return {}, []  # nothing to analyse; skip the ancestor sets (quadratic in the number of steps)
    by_id = {s.id: s for s in steps}
    anc = ancestors(deps)
    order = topological_order(list(deps), deps)
    layouts: dict[str, DecisionLayout] = {}
    issues: list[BranchIssue] = []
    target_of: dict[str, str] = {}
    for decision in (s for s in steps if s.type == "decision"):
        d = decision.id
        upstream = anc[d] | {d}
        layout = DecisionLayout(d, [])
        seen_targets: dict[str, str] = {}
        for index, (label, targets) in enumerate(branch_labels(decision)):
            where = (
                f"parameters.choices[{index}].next" if label != "default" else "parameters.default"
            )
            branch = Branch(label, list(targets))
            for t_i, target in enumerate(targets):
                path = f"{where}[{t_i}]"
                if target not in by_id:
                    issues.append(BranchIssue(d, path, f"unknown step '{target}'"))
                    continue
                if target == d:
                    issues.append(BranchIssue(d, path, "a decision cannot route to itself"))
                    continue
                if target in seen_targets:
                    issues.append(
                        BranchIssue(d, path, f"step '{target}' is already on branch {seen_targets[target]}")
                    )
                    continue
                if target in target_of:
                    issues.append(
                        BranchIssue(d, path, f"step '{target}' is already a branch target of '{target_of[target]}'")
                    )
                    continue
                if d not in deps[target]:
                    issues.append(
                        BranchIssue(
                            d, path, f"branch target '{target}' must list '{d}' in its dependencies"
                        )
                    )
                    continue
                early = [x for x in deps[target] if x not in upstream]
                if early:
                    issues.append(
                        BranchIssue(
                            target,
                            "dependencies",
                            f"on a branch of decision '{d}' but also depends on '{early[0]}', which may still "
                            f"be running when '{d}' decides; make '{d}' depend on '{early[0]}' instead",
                        )
                    )
                    continue
                seen_targets[target] = label
                target_of[target] = d
                branch.members.add(target)
            layout.branches.append(branch)
        for s in order:
            if d not in anc[s] or s in seen_targets:
                continue
            for branch in layout.branches:
                own = branch.members | upstream
                if all(x in own for x in deps[s]) and any(x in branch.members for x in deps[s]):
                    branch.members.add(s)
                    break
            else:
                if all(x in upstream for x in deps[s]):
                    issues.append(
                        BranchIssue(
                            s,
                            "dependencies",
                            f"depends on decision '{d}' but is on none of its branches; "
                            f"name '{s}' in one of its choices' next or in its default",
                        )
                    )
        layouts[d] = layout
    return layouts, issues


def innermost_owner(layouts: Mapping[str, DecisionLayout]) -> dict[str, tuple[str, int]]:
    """For each step on a branch: (decision, branch index) of the innermost branch holding it."""
    owner: dict[str, tuple[str, int]] = {}
    size: dict[str, int] = {}
    for d, layout in layouts.items():
        region = len(layout.all_members)
        for i, branch in enumerate(layout.branches):
            for s in branch.members:
                if s not in owner or region < size[s]:
                    owner[s] = (d, i)
                    size[s] = region
    return owner
