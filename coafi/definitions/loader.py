"""Load workflow definitions from YAML or JSON, reporting every problem at once with file, step and field."""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coafi.definitions.branches import analyse_decisions
from coafi.definitions.errors import DefinitionError, Problem
from coafi.definitions.graph import find_cycles
from coafi.definitions.models import ACTION_NAME_PATTERN, KNOWN_STEP_TYPES, WorkflowDefinition, WorkflowStep

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


def discover_actions(project_root: Path) -> set[str]:
    """Action names: the folders ``functions/actions/<name>/`` that hold a ``handler.py``."""
    folder = project_root / "functions" / "actions"
    if not folder.is_dir():
        return set()
    return {p.parent.name for p in folder.glob("*/handler.py")}


def find_project_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``functions/actions`` or ``cdk.json``."""
    for folder in [start, *start.parents]:
        if (folder / "functions" / "actions").is_dir() or (folder / "cdk.json").is_file():
            return folder
    return None


def definition_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus the definition files directly inside named folders."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in DEFINITION_SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def parse_document(path: Path) -> Any:
    """The file's data. Raises DefinitionError for unreadable files and syntax errors (with line)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError([Problem(name, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(name, "", f"cannot read file: {exc}")]) from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DefinitionError(
                [Problem(name, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}")]
            ) from None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~7x faster
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError([Problem(name, where, f"invalid YAML: {reason}")]) from None


def load_definition(path: Path | str, *, actions: set[str] | None = None) -> WorkflowDefinition:
    """Load one definition file. ``actions`` are the known action names (default: discovered from the
    project that holds the file); pass an empty set to accept none, or None to discover."""
    path = Path(path)
    data = parse_document(path)
    if actions is None:
        root = find_project_root(path.resolve().parent)
        actions = discover_actions(root) if root else None
    from coafi.resilience.loading import with_error_policies  # ids in `policies` name files in policies/

    return with_error_policies(path, data, lambda: validate_definition(data, str(path), actions=actions))


def load_definitions(
    paths: Sequence[Path | str], *, actions: set[str] | None = None
) -> list[WorkflowDefinition]:
    """Load several definitions; problems of all files (and between files) are raised together."""
    problems: list[Problem] = []
    loaded: list[tuple[Path, WorkflowDefinition]] = []
    for path in definition_files(Path(p) for p in paths):
        try:
            loaded.append((path, load_definition(path, actions=actions)))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    problems.extend(_cross_file_problems(loaded))
    if problems:
        raise DefinitionError(problems)
    return [d for _, d in loaded]


def _cross_file_problems(loaded: list[tuple[Path, WorkflowDefinition]]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, Path] = {}
    for path, definition in loaded:
        if definition.id in owner:
            problems.append(
                Problem(str(path), "id", f"workflow id '{definition.id}' is already used by {owner[definition.id]}")
            )
        owner.setdefault(definition.id, path)
    children: dict[str, list[str]] = {}
    starter: dict[tuple[str, str], tuple[Path, int, str]] = {}
    for path, definition in loaded:
        children.setdefault(definition.id, [])
        for i, step in enumerate(definition.steps):
            if step.type != "subworkflow":
                continue
            children[definition.id].append(step.action)
            starter.setdefault((definition.id, step.action), (path, i, step.id))
            if step.action not in owner:
                known = ", ".join(sorted(owner)) or "none"
                problems.append(
                    Problem(
                        str(path), f"steps[{i}].action",
                        f"unknown workflow '{step.action}' (known workflows: {known})", step.id,
                    )
                )
    for cycle in find_cycles(children):
        path, index, step_id = starter[(cycle[0], cycle[1])]
        problems.append(
            Problem(
                str(path), f"steps[{index}].action",
                "sub-workflows start each other in a cycle: " + " -> ".join(cycle), step_id,
            )
        )
    return problems


def validate_definition(data: Any, file: str, *, actions: set[str] | None = None) -> WorkflowDefinition:
    """Validate parsed data. Structural checks run even when some fields are invalid, so a user sees
    every problem of the file in one go."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise DefinitionError([Problem(file, "", f"a definition must be a mapping with id, name, version, "
                                                 f"steps; this file is {kind}")])
    problems: list[Problem] = []
    definition: WorkflowDefinition | None = None
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, data, file))
    problems.extend(_structure_problems(data, file, actions))
    if problems:
        raise DefinitionError(problems)
    assert definition is not None
    return definition


def _step_id_at(data: dict[str, Any], index: int) -> str | None:
    steps = data.get("steps")
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        sid = steps[index].get("id")
        return sid if isinstance(sid, str) else None
    return None


@functools.cache
def _field_names() -> frozenset[str]:
    """Every field name of the format: a location ending in one names that field, present or not."""
    names: set[str] = set()
    for model in _models_by_parent().values():
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return frozenset(names)


def _models_by_parent() -> dict[str, type[Any]]:
    """The model whose fields sit under a location part (a field name or a union tag)."""
    from coafi.definitions import models

    return {
        "": models.WorkflowDefinition,
        "steps": models.WorkflowStep,
        "retryPolicy": models.RetryPolicy,
        "alarms": models.AlarmSettings,
        "event": models.EventTrigger,
        "schedule": models.ScheduleTrigger,
        "manual": models.ManualTrigger,
        "choices": models.DecisionChoice,
        "fact-condition": models.FactCondition,
        "all-condition": models.AllCondition,
        "any-condition": models.AnyCondition,
        "not-condition": models.NotCondition,
        **_error_policy_models(),
    }


def _error_policy_models() -> dict[str, type[Any]]:
    """The models of inline error policies (``policies[i]``), for field names and hints."""
    from coafi.resilience import policies

    return {"policy": policies.ErrorPolicy, "retryStrategy": policies.RetryStrategy,
            "escalationThreshold": policies.EscalationThreshold}


def _pydantic_problems(exc: ValidationError, data: dict[str, Any], file: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        if tuple(err["loc"]) == ("steps",) and err["type"] == "too_short":
            continue  # reported by the structure checks, with a hint
        parts: list[str] = []
        node: Any = data
        step: str | None = None
        loc = list(err["loc"])
        for i, part in enumerate(loc):
            if isinstance(part, int):
                parts.append(f"[{part}]")
                node = node[part] if isinstance(node, list) and part < len(node) else None
                if i == 1 and loc[0] == "steps":
                    step = _step_id_at(data, part)
            elif (isinstance(node, dict) and part in node) or (i == len(loc) - 1 and (
                err["type"] in ("missing", "extra_forbidden") or part in _field_names()
            )):
                parts.append(("." if parts else "") + part)
                node = node.get(part) if isinstance(node, dict) else None
        if err["type"] == "union_tag_invalid":
            parts.append(("." if parts else "") + str(err["ctx"]["discriminator"]).strip("'"))
        path = "".join(parts)
        message = _message(err, node)
        problems.append(Problem(file, path, message, step))
    return problems


def _message(err: Any, node: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "missing":
        return f"required field '{loc[-1]}' is missing"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        known = _known_fields(loc)
        hint = difflib.get_close_matches(name, known, n=1)
        return f"unknown field '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        field_name = str(loc[-1])
        rule = "lowercase letters, digits and dashes, e.g. content-generation"
        if "steps" in loc:
            rule = "a letter, then letters, digits, '_' or '-' (at most 64 characters)"
        if field_name == "path":
            rule = "a JSONPath such as $.order.total"
        return f"{field_name} {err.get('input')!r} is not valid: use {rule}"
    if kind == "union_tag_invalid":
        expected = str(err["ctx"]["expected_tags"]).replace("'", "")
        return f"unknown trigger type {err['ctx']['tag']!r}; use one of: {expected}"
    if kind == "literal_error" and loc and loc[-1] == "type" and "steps" in loc:
        value = err.get("input")
        message = f"unknown step type {value!r}; use one of: {', '.join(KNOWN_STEP_TYPES)}"
        if value == "parallel":
            message += " (steps without dependencies between them already run in parallel)"
        return message
    value = err.get("input")
    if isinstance(value, str | int | float | bool) and kind not in ("value_error", "assertion_error"):
        message += f" (got {value!r})"
    return message


def _known_fields(loc: Sequence[Any]) -> list[str]:
    from coafi.definitions import models

    names = [p for p in loc if isinstance(p, str)]
    parent = names[-2] if len(names) >= 2 else ""
    if parent == "parameters":  # of a wait or a decision step (a task's parameters are free-form)
        from coafi.definitions import waits

        return [*models.WaitParameters.model_fields, *models.DecisionParameters.model_fields,
                *waits.CallbackParameters.model_fields, *waits.SignalParameters.model_fields]
    model = _models_by_parent().get(parent, models.WorkflowDefinition)
    return [info.alias or name for name, info in model.model_fields.items()]


def _structure_problems(data: dict[str, Any], file: str, actions: set[str] | None) -> list[Problem]:
    """Ids, dependencies, cycles, decisions and actions — checked on whatever steps are readable."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    problems: list[Problem] = []
    if not steps:
        return [Problem(file, "steps", "the workflow has no steps; add at least one")]
    deps: dict[str, list[str]] = {}
    first_index: dict[str, int] = {}
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        sid = raw["id"]
        if sid in first_index:
            problems.append(Problem(file, f"steps[{i}].id",
                                    f"duplicate step id '{sid}' (first used at steps[{first_index[sid]}])", sid))
            continue
        first_index[sid] = i
        raw_deps = raw.get("dependencies", [])
        if isinstance(raw_deps, str):
            raw_deps = [raw_deps]
        deps[sid] = [d for d in raw_deps if isinstance(d, str)] if isinstance(raw_deps, list) else []
    for sid, sdeps in deps.items():
        i = first_index[sid]
        for j, dep in enumerate(sdeps):
            if dep == sid:
                problems.append(Problem(file, f"steps[{i}].dependencies[{j}]", "a step cannot depend on itself", sid))
            elif dep not in deps:
                hint = difflib.get_close_matches(dep, list(deps), n=1)
                problems.append(Problem(file, f"steps[{i}].dependencies[{j}]", f"unknown step '{dep}'"
                                        + (f"; did you mean '{hint[0]}'?" if hint else ""), sid))
    known_deps = {s: [d for d in ds if d in deps and d != s] for s, ds in deps.items()}
    cycles = find_cycles(known_deps)
    for cycle in cycles:
        problems.append(Problem(file, f"steps[{first_index[cycle[0]]}].dependencies",
                                "dependency cycle: " + " -> ".join(cycle), cycle[0]))
    graph_is_sound = not cycles and not problems
    if actions is not None:
        problems.extend(_action_problems(steps, file, actions))
        from coafi.saga.definitions import unknown_action_problems  # compensate / schedule actions

        problems.extend(Problem(file, f"steps[{i}].{path}", message, sid)
                        for i, path, message, sid in unknown_action_problems(steps, actions))
    if graph_is_sound:
        readable = [s for _, s in _readable_steps(steps)]
        if len(readable) == len(deps):
            _, issues = analyse_decisions(readable, known_deps)
            for issue in issues:
                problems.append(Problem(file, f"steps[{first_index[issue.step]}].{issue.path}",
                                        issue.message, issue.step))
    return problems


def _action_problems(steps: list[Any], file: str, actions: set[str]) -> list[Problem]:
    """Task steps naming an action that has no handler (checked even on steps with other problems)."""
    problems: list[Problem] = []
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict) or raw.get("type", "task") != "task":
            continue
        action = raw.get("action")
        if not isinstance(action, str) or not ACTION_NAME_PATTERN.match(action) or action in actions:
            continue
        hint = difflib.get_close_matches(action, sorted(actions), n=1)
        sid = raw.get("id") if isinstance(raw.get("id"), str) else None
        problems.append(Problem(
            file, f"steps[{i}].action",
            f"unknown action '{action}': no functions/actions/{action}/handler.py"
            + (f"; did you mean '{hint[0]}'?" if hint else ""), sid))
    return problems


def _readable_steps(steps: list[Any]) -> list[tuple[int, WorkflowStep]]:
    readable: list[tuple[int, WorkflowStep]] = []
    for i, raw in enumerate(steps):
        try:
            readable.append((i, WorkflowStep.model_validate(raw)))
        except ValidationError:
            continue
    return readable
