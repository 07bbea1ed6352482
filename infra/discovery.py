"""What the app deploys, found on disk: action folders and workflow definitions (compiled, in build order)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from coafi.compiler import CompiledWorkflow, compile_workflow
from coafi.definitions import DefinitionError, Problem, WorkflowDefinition, load_definition

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class WorkflowReferenceError(ValueError):
    """A sub-workflow reference the app cannot build: unknown workflow, duplicate id, or a cycle."""


@dataclass(frozen=True)
class Workflow:
    file: Path
    definition: WorkflowDefinition
    compiled: CompiledWorkflow

    @property
    def id(self) -> str:
        return self.definition.id


def discover_actions(actions_dir: Path) -> dict[str, Path]:
    """``functions/actions/<name>/`` folders holding a ``handler.py``, by name (sorted)."""
    if not actions_dir.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(actions_dir.glob("*/handler.py")) if p.is_file()}


def definition_files(definitions_dir: Path) -> list[Path]:
    """The definition files directly inside ``definitions_dir`` (not its subfolders), sorted."""
    if not definitions_dir.is_dir():
        return []
    return sorted(
        p for p in definitions_dir.iterdir() if p.is_file() and p.suffix.lower() in DEFINITION_SUFFIXES
    )


def load_workflows(definitions_dir: Path, actions: set[str]) -> list[Workflow]:
    """Load and compile every definition; every file's problems are raised together (DefinitionError).

    The result is ordered so that a workflow comes after every workflow it starts as a sub-workflow.
    """
    problems: list[Problem] = []
    loaded: list[Workflow] = []
    for file in definition_files(definitions_dir):
        try:
            definition = load_definition(file, actions=actions)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        compiled = compile_workflow(definition)
        check_placeholders(file, compiled)
        loaded.append(Workflow(file, definition, compiled))
    if problems:
        raise DefinitionError(problems)
    return order_workflows(loaded)


def check_placeholders(file: Path, compiled: CompiledWorkflow) -> None:
    """Every ``${X}`` in the ASL has a substitution and every substitution is used (compiler contract)."""
    used = set(PLACEHOLDER.findall(_all_strings(compiled.asl)))
    declared = set(compiled.substitutions)
    if used != declared:
        raise ValueError(
            f"{file}: the compiled ASL and its substitutions disagree "
            f"(used but not declared: {sorted(used - declared)}; declared but unused: {sorted(declared - used)})"
        )


def _all_strings(value: object) -> str:
    if isinstance(value, str):
        return value + "\n"
    if isinstance(value, dict):
        return "".join(_all_strings(k) + _all_strings(v) for k, v in value.items())
    if isinstance(value, list):
        return "".join(_all_strings(v) for v in value)
    return ""


def order_workflows(workflows: list[Workflow]) -> list[Workflow]:
    """Children before parents (stable: otherwise file order). Raises WorkflowReferenceError naming files."""
    by_id: dict[str, Workflow] = {}
    for wf in workflows:
        if wf.id in by_id:
            raise WorkflowReferenceError(
                f"workflow id '{wf.id}' is defined twice: {by_id[wf.id].file} and {wf.file}"
            )
        by_id[wf.id] = wf
    for wf in workflows:
        for child in wf.compiled.subworkflows:
            if child not in by_id:
                known = ", ".join(sorted(by_id)) or "none"
                folder = wf.file.parent
                raise WorkflowReferenceError(
                    f"{wf.file} starts sub-workflow '{child}', but no definition file in {folder} has "
                    f"id '{child}' (workflows found: {known})"
                )

    ordered: list[Workflow] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(wf: Workflow) -> None:
        if wf.id in done:
            return
        if wf.id in visiting:
            cycle = [*visiting[visiting.index(wf.id):], wf.id]
            files = " -> ".join(f"{by_id[i].file} ({i})" for i in cycle)
            raise WorkflowReferenceError(f"sub-workflows start each other in a cycle: {files}")
        visiting.append(wf.id)
        for child in wf.compiled.subworkflows:
            visit(by_id[child])
        visiting.pop()
        done.add(wf.id)
        ordered.append(wf)

    for wf in workflows:
        visit(wf)
    return ordered
