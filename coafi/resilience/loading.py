"""Error policies from files: ``<definitions folder>/policies/*.yaml|yml|json`` (one policy per file, or a list
of policies), named by id from definitions' ``policies``. Every problem names the file and the field."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from coafi.resilience.policies import ErrorPolicy

if TYPE_CHECKING:
    from coafi.definitions.errors import Problem
    from coafi.definitions.models import WorkflowDefinition

POLICIES_FOLDER = "policies"
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class PolicyLibrary:
    """The policies of one folder, by id, with the file each came from; and what is wrong with the folder."""

    folder: Path
    policies: dict[str, tuple[ErrorPolicy, Path]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def policy_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _problems(exc: ValidationError, file: str, prefix: str) -> list[Problem]:
    from coafi.definitions.errors import Problem

    out: list[Problem] = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
        kind = err["type"]
        if kind == "missing":
            message = f"required field '{err['loc'][-1]}' is missing"
        elif kind == "extra_forbidden":
            name = str(err["loc"][-1])
            known = list(_model_at(err["loc"][:-1]).model_fields)
            hint = difflib.get_close_matches(name, known, n=1)
            message = f"unknown field '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            value = err.get("input")
            if isinstance(value, str | int | float | bool) and kind not in ("value_error", "assertion_error"):
                message += f" (got {value!r})"
        out.append(Problem(file, path, message))
    return out


def _model_at(loc: tuple[Any, ...]) -> type[Any]:
    from coafi.resilience.policies import EscalationThreshold, RetryStrategy

    names = [p for p in loc if isinstance(p, str)]
    return {"retryStrategy": RetryStrategy, "escalationThreshold": EscalationThreshold}.get(
        names[-1] if names else "", ErrorPolicy)


def load_policy_file(path: Path) -> tuple[list[ErrorPolicy], list[Problem]]:
    """The policies of one file (a policy mapping, or a list of them) and the file's problems."""
    from coafi.definitions.errors import DefinitionError, Problem
    from coafi.definitions.loader import parse_document

    try:
        data = parse_document(path)
    except DefinitionError as exc:
        return [], list(exc.problems)
    entries: list[tuple[str, Any]]
    if isinstance(data, dict):
        entries = [("", data)]
    elif isinstance(data, list) and data:
        entries = [(f"[{i}]", entry) for i, entry in enumerate(data)]
    else:
        kind = "empty" if data in (None, []) else f"a {type(data).__name__}"
        return [], [Problem(str(path), "", f"an error policy file holds one policy (a mapping with id, errorTypes, "
                                           f"...) or a list of them; this file is {kind}")]
    policies: list[ErrorPolicy] = []
    problems: list[Problem] = []
    for prefix, entry in entries:
        if not isinstance(entry, dict):
            problems.append(Problem(str(path), prefix, f"an error policy is a mapping, got {type(entry).__name__}"))
            continue
        try:
            policies.append(ErrorPolicy.model_validate(entry))
        except ValidationError as exc:
            problems.extend(_problems(exc, str(path), prefix))
    return policies, problems


def load_policy_library(folder: Path) -> PolicyLibrary:
    """Every policy in ``folder`` (not its subfolders); a policy id used twice is a problem."""
    from coafi.definitions.errors import Problem

    library = PolicyLibrary(folder)
    for path in policy_files(folder):
        policies, problems = load_policy_file(path)
        library.problems.extend(problems)
        for policy in policies:
            if policy.id in library.policies:
                first = library.policies[policy.id][1]
                library.problems.append(Problem(str(path), "id", f"error policy id '{policy.id}' is already "
                                                                  f"declared in {first}"))
                continue
            library.policies[policy.id] = (policy, path)
    return library


def with_error_policies(path: Path, data: Any, validate: Callable[[], WorkflowDefinition]) -> WorkflowDefinition:
    """Validate a definition (``validate``) and resolve the policy ids of its ``policies`` against
    ``<its folder>/policies/``; the definition's problems and the policies' are raised together."""
    from coafi.definitions.errors import DefinitionError, Problem

    file = str(path)
    problems: list[Problem] = []
    definition: WorkflowDefinition | None = None
    try:
        definition = validate()
    except DefinitionError as exc:
        problems.extend(exc.problems)
    refs = data.get("policies") if isinstance(data, dict) else None
    refs = refs if isinstance(refs, list) else []
    inline: dict[str, int] = {}
    for index, ref in enumerate(refs):
        ref_id = ref.get("id") if isinstance(ref, dict) else ref
        if not isinstance(ref_id, str):
            continue
        if ref_id in inline:
            problems.append(Problem(file, f"policies[{index}]", f"error policy '{ref_id}' is listed twice "
                                                                f"(first at policies[{inline[ref_id]}])"))
        inline.setdefault(ref_id, index)
    folder = path.parent / POLICIES_FOLDER
    library = PolicyLibrary(folder)
    if any(isinstance(ref, str) for ref in refs):
        library = load_policy_library(folder)
        problems.extend(library.problems)
        for index, ref in enumerate(refs):
            if isinstance(ref, str) and ref not in library.policies and inline.get(ref) == index:
                known = sorted(library.policies)
                hint = difflib.get_close_matches(ref, known, n=1)
                problems.append(Problem(
                    file, f"policies[{index}]",
                    f"unknown error policy '{ref}': no policy with that id in {folder}"
                    + (f" (known: {', '.join(known)})" if known else " (the folder has none)")
                    + (f"; did you mean '{hint[0]}'?" if hint else ""),
                ))
    if problems:
        raise DefinitionError(problems)
    assert definition is not None
    definition.policies = [library.policies[ref][0] if isinstance(ref, str) else ref for ref in definition.policies]
    return definition
