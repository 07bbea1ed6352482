"""Decisions that route on rules: checks of a choice's ``rule`` (at load time) and of the rule ids decisions
reference (at ``coafi validate`` and synth time, against the registry's rule files).

    - id: route
      type: decision
      dependencies: [check]
      parameters:
        choices:
          - rule: high-value-order            # a rule of statemachines/rules/
            next: [review]
          - rule:                             # an inline json-rules-engine rule
              conditions: {all: [{fact: input, path: $.amount, operator: lessThan, value: 10}]}
            next: [auto-approve]
        default: [standard]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coafi.definitions.errors import Problem

if TYPE_CHECKING:
    from coafi.definitions.models import WorkflowDefinition
    from coafi.rules.files import RuleFile

__all__ = [
    "RULE_ID_PATTERN",
    "check_choice_rule",
    "choice_rules",
    "rule_reference_problems",
    "uses_rules",
    "with_event",
    "workflow_rule_problems",
]

#: A rule id referenced from a definition (the registry accepts any text; definitions keep ids readable).
RULE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,255}$")


def check_choice_rule(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """A choice's ``rule``: a rule id, or an inline rule that compiles and reads only the facts ``input`` and
    ``steps``. Raises ``ValueError`` listing every problem with its JSONPath inside the rule."""
    if value is None:
        return None
    if isinstance(value, str):
        if not RULE_ID_PATTERN.match(value):
            raise ValueError(f"rule {value!r} is not a rule id (letters, digits and - _ . : /, starting with a "
                             "letter or digit) nor an inline rule object")
        return value
    from coafi.rules import RuleEngine, RuleValidationError

    problems: list[str] = []
    try:
        RuleEngine().compile(with_event(value, "choice"))
    except RuleValidationError as exc:
        problems.extend(str(p) for p in exc.problems)
    problems.extend(f"{path}: {message}" for path, message in _fact_problems(value))
    if problems:
        raise ValueError("invalid inline rule: " + "; ".join(problems))
    return value


def with_event(rule: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    """An inline rule may leave out json-rules-engine's ``event`` (a decision only needs to know whether the
    rule holds): it gets ``{"type": event_type}``."""
    return dict(rule) if "event" in rule else {**rule, "event": {"type": event_type}}


def workflow_rule_problems(paths: Sequence[Path | str]) -> tuple[list[Problem], int]:
    """What ``coafi validate`` adds for rules: every problem of the rule files next to the definitions
    (``<folder>/rules/``) and every decision referencing a rule none of them defines. Returns the problems and
    the number of valid registry rules found. Definitions that do not load are left to the loader's report."""
    from coafi.definitions import DefinitionError, definition_files, load_definition
    from coafi.rules.files import load_rule_files, rules_dir

    folders: list[Path] = []
    for path in map(Path, paths):
        folder = rules_dir(path if path.is_dir() else path.parent)
        if folder not in folders:
            folders.append(folder)
    problems: list[Problem] = []
    loaded_files: list[RuleFile] = []
    for folder in folders:
        files, file_problems = load_rule_files(folder)
        problems.extend(file_problems)
        loaded_files.extend(files)
    definitions: list[tuple[Path, WorkflowDefinition]] = []
    for file in definition_files(Path(p) for p in paths):
        try:
            definitions.append((file, load_definition(file)))
        except DefinitionError:
            continue
    for folder in folders:
        here = [d for d in definitions if rules_dir(d[0].parent) == folder]
        in_folder = [f for f in loaded_files if f.file.parent == folder]
        problems.extend(rule_reference_problems(here, in_folder, folder))
    return problems, sum(len(f.rules) for f in loaded_files)


def _fact_problems(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    from coafi.rules.files import unknown_fact_problems

    return unknown_fact_problems(rule.get("conditions"), "$.conditions")


def uses_rules(definition: WorkflowDefinition) -> bool:
    """The workflow invokes the rules function (a rule-driven choice or a rules step)."""
    return any(s.type == "rules" for s in definition.steps) or any(True for _ in choice_rules(definition))


def choice_rules(definition: WorkflowDefinition) -> Iterable[tuple[str, str, str | dict[str, Any]]]:
    """``(path in the definition, step id, rule)`` of every rule a decision's choice or a rules step names."""
    for s_i, step in enumerate(definition.steps):
        if step.type == "decision":
            for c_i, choice in enumerate(step.decision.choices):
                if choice.rule is not None:
                    yield f"steps[{s_i}].parameters.choices[{c_i}].rule", step.id, choice.rule
        elif step.type == "rules":
            for r_i, rule in enumerate(step.rules.rules):
                yield f"steps[{s_i}].parameters.rules[{r_i}]", step.id, rule


def rule_reference_problems(
    definitions: Iterable[tuple[Path | str, WorkflowDefinition]], rule_files: Iterable[RuleFile], rules_folder: Path
) -> list[Problem]:
    """Every decision that names a rule no rule file defines, or a registry rule that reads facts other than
    ``input`` and ``steps`` (it could never be satisfied by a workflow's data: evaluating it fails)."""
    from coafi.rules.files import unknown_fact_problems

    by_id: dict[str, tuple[RuleFile, Any]] = {}
    for loaded in rule_files:
        for stored in loaded.rules:
            by_id[stored.id] = (loaded, stored)
    problems: list[Problem] = []
    for file, definition in definitions:
        for where, step_id, rule in choice_rules(definition):
            if not isinstance(rule, str):
                continue
            if rule not in by_id:
                known = ", ".join(sorted(by_id)) or "none"
                problems.append(Problem(str(file), where, f"unknown rule {rule!r}: no file in {rules_folder} defines "
                                                          f"it (rules found: {known})", step_id))
                continue
            loaded, model = by_id[rule]
            base = loaded.paths.get(rule, "$")
            for path, message in unknown_fact_problems(model.conditions, f"{base}.conditions"):
                problems.append(Problem(str(file), where,
                                        f"rule {rule!r} ({loaded.file}: {path}): {message}", step_id))
    return problems
