"""Registry rule files (``statemachines/rules/*.json|yaml``): loaded, validated with the JSONPath of every problem,
and turned into the :class:`~coafi.rules.models.Rule` items the deploy writes to the registry.

A file holds one rule, a list of rules, or ``{"rules": [...], "conditions": {name: condition}}``; every rule
needs an ``id`` (the registry's key) and may have ``category``, ``description``, ``enabled``, ``priority``,
``event`` or ``actions`` (see ``coafi/rules/README.md``). Named conditions are part of the file: they are
expanded into the rules that reference them before storing, so a stored rule is self-contained.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coafi.definitions.errors import Problem

if TYPE_CHECKING:
    from coafi.rules.models import Rule

__all__ = [
    "RULE_FILE_SUFFIXES",
    "WORKFLOW_FACTS",
    "RuleFile",
    "expand_conditions",
    "facts_used",
    "load_rule_files",
    "rule_files",
    "rules_dir",
    "unknown_fact_problems",
]

RULE_FILE_SUFFIXES = (".json", ".yaml", ".yml")
#: The facts a decision's (or rules step's) rules are evaluated against.
WORKFLOW_FACTS = ("input", "steps")


@dataclass
class RuleFile:
    """One rule file: its rules as stored in the registry (named conditions expanded) and their JSONPaths."""

    file: Path
    rules: list[Rule] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def rules_dir(definitions_dir: Path) -> Path:
    """Where a project's registry rules live: ``<definitions dir>/rules``."""
    return definitions_dir / "rules"


def rule_files(folder: Path) -> list[Path]:
    """The rule files directly inside ``folder``, sorted (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RULE_FILE_SUFFIXES)


def expand_conditions(conditions: Any, named: Mapping[str, Any]) -> Any:
    """``conditions`` with every ``{"condition": name}`` replaced by the named condition (recursively; the
    names must be acyclic, which validation checks first). A reference's own ``priority`` is kept."""
    if isinstance(conditions, list):
        return [expand_conditions(c, named) for c in conditions]
    if not isinstance(conditions, Mapping):
        return conditions
    if isinstance(conditions.get("condition"), str) and conditions["condition"] in named:
        expanded = copy.deepcopy(expand_conditions(named[conditions["condition"]], named))
        if "priority" in conditions and isinstance(expanded, dict):
            expanded["priority"] = conditions["priority"]
        return expanded
    return {k: expand_conditions(v, named) if k in ("all", "any", "not") else copy.deepcopy(v)
            for k, v in conditions.items()}


def facts_used(conditions: Any, where: str = "$.conditions") -> Iterable[tuple[str, str]]:
    """``(JSONPath, fact id)`` of every fact a condition tree reads (leaves and fact-valued comparisons)."""
    if isinstance(conditions, list):
        for i, c in enumerate(conditions):
            yield from facts_used(c, f"{where}[{i}]")
        return
    if not isinstance(conditions, Mapping):
        return
    for key in ("all", "any", "not"):
        if key in conditions:
            yield from facts_used(conditions[key], f"{where}.{key}")
    if isinstance(conditions.get("fact"), str):
        yield f"{where}.fact", conditions["fact"]
    value = conditions.get("value")
    if isinstance(value, Mapping) and isinstance(value.get("fact"), str):
        yield f"{where}.value.fact", value["fact"]


def unknown_fact_problems(conditions: Any, where: str = "$.conditions") -> list[tuple[str, str]]:
    """``(JSONPath, message)`` for every fact other than the workflow's ``input`` and ``steps``."""
    return [
        (path, f"unknown fact {fact!r}: rules in a workflow see the facts 'input' (the workflow input) and "
               "'steps' (earlier steps' outputs, {stepId: {output}}); use e.g. "
               "{\"fact\": \"input\", \"path\": \"$.amount\"}")
        for path, fact in facts_used(conditions, where)
        if fact not in WORKFLOW_FACTS
    ]


def load_rule_file(path: Path) -> tuple[RuleFile, list[Problem]]:
    """Load and validate one file: every problem with its JSONPath, and the rules that are valid."""
    from pydantic import ValidationError

    from coafi.rules import RuleEngine, RuleValidationError
    from coafi.rules.cli import _FileError, load_rules_file
    from coafi.rules.models import Rule

    name = str(path)
    result = RuleFile(path)
    try:
        raw_rules, named, base, single = load_rules_file(path)
    except _FileError as exc:
        message = str(exc)
        return result, [Problem(name, "", message.removeprefix(f"{path}: "))]
    problems: list[Problem] = []
    engine = RuleEngine()
    for cond_name, condition in named.items():
        try:
            engine.set_condition(cond_name, condition)
        except RuleValidationError as exc:
            problems.extend(Problem(name, p.path, p.message) for p in exc.problems)
    seen: dict[str, str] = {}
    models: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        where = "$" if single else f"{base}[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw.get("id"):
            problems.append(Problem(name, f"{where}.id" if isinstance(raw, Mapping) else where,
                                    "a registry rule needs an \"id\" (a non-empty string): the key it is "
                                    "stored and referenced by"))
            continue
        try:
            model = Rule.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                problems.append(Problem(name, f"{where}{loc}", err["msg"]))
            continue
        try:
            engine.compile(model.engine_rule(), base=where)
        except RuleValidationError as exc:
            problems.extend(Problem(name, p.path, p.message) for p in exc.problems)
            continue
        if model.id in seen:
            problems.append(Problem(name, f"{where}.id", f"rule id {model.id!r} is already used at {seen[model.id]}"))
            continue
        seen[model.id] = where
        if named:
            model = model.model_copy(update={"conditions": expand_conditions(model.conditions, named)})
        models.append(model)
        result.paths[model.id] = where
    result.rules = models  # the valid ones (references to them are checked); the deploy refuses any problem
    return result, problems


def load_rule_files(folder: Path) -> tuple[list[RuleFile], list[Problem]]:
    """Every rule file of ``folder`` and every problem of all of them (ids must be unique across files)."""
    files: list[RuleFile] = []
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for path in rule_files(folder):
        loaded, file_problems = load_rule_file(path)
        problems.extend(file_problems)
        for rule in loaded.rules:
            if rule.id in owner:
                problems.append(Problem(str(path), f"{loaded.paths[rule.id]}.id",
                                        f"rule id {rule.id!r} is already defined in {owner[rule.id]}"))
            owner.setdefault(rule.id, str(path))
        files.append(loaded)
    return files, problems
