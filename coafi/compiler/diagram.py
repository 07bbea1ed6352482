"""Mermaid flowcharts of workflow definitions, for READMEs and reviews."""

from __future__ import annotations

from coafi.definitions.branches import branch_labels
from coafi.definitions.models import WorkflowDefinition

_SHAPES = {
    "task": ('["', '"]'),
    "wait": ('(["', '"])'),
    "decision": ('{"', '"}'),
    "subworkflow": ('[["', '"]]'),
    "callback": ('[/"', '"/]'),
    "signal": ('>"', '"]'),
    "schedule": ('[/"', '"/]'),
    "rules": ('[/"', '"/]'),
}


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def mermaid(definition: WorkflowDefinition) -> str:
    """A ``flowchart TD``: one node per step (shape by type), an edge per dependency, decision edges
    labelled with the condition's branch."""
    ids = {s.id: f"s{i}" for i, s in enumerate(definition.steps)}
    lines = ["flowchart TD", f'    start(("{_label(definition.name)}"))']
    branch_edge: dict[tuple[str, str], str] = {}
    for step in definition.steps:
        if step.type == "decision":
            for label, targets in branch_labels(step):
                for target in targets:
                    branch_edge[(step.id, target)] = label
    has_dependents = {d for s in definition.steps for d in s.dependencies}
    for step in definition.steps:
        left, right = _SHAPES[step.type]
        detail = f"<br/><small>{_label(step.action)}</small>" if step.action else ""
        if step.type == "wait":
            wait = step.wait
            waited = f"{wait.seconds}s" if isinstance(wait.seconds, int) else (
                f"{wait.seconds} seconds" if wait.seconds else f"until {wait.until}")
            detail = f"<br/><small>wait {_label(waited)}</small>"
        if step.type == "schedule":
            detail = f"<br/><small>schedules {_label(str(step.parameters.get('task', '')))}</small>"
        lines.append(f"    {ids[step.id]}{left}{_label(step.name)}{detail}{right}")
    for step in definition.steps:
        if not step.dependencies:
            lines.append(f"    start --> {ids[step.id]}")
        for dep in step.dependencies:
            edge_label = branch_edge.get((dep, step.id))
            arrow = f" -->|{edge_label}| " if edge_label else " --> "
            lines.append(f"    {ids[dep]}{arrow}{ids[step.id]}")
    lines.append('    finish(("done"))')
    for step in definition.steps:
        if step.id not in has_dependents:
            lines.append(f"    {ids[step.id]} --> finish")
    return "\n".join(lines) + "\n"
