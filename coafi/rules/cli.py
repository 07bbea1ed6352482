"""``coafi rules eval``, ``coafi rules validate``, and the deployed registry's ``coafi rules deploy`` / ``list``.

Wire into the main parser with ``coafi.rules.cli.register(subparsers)``; each subcommand sets ``func`` to a
``(argparse.Namespace) -> int`` handler, like the other ``coafi`` commands.

A rules file is JSON (or YAML by extension): one rule, a list of rules, or ``{"rules": [...],
"conditions": {name: condition}}`` with named conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_deploy", "cmd_eval", "cmd_list", "cmd_validate", "load_rules_file", "register"]


class _FileError(Exception):
    pass


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _FileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _FileError(f"{path}: invalid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _FileError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def load_rules_file(path: Path) -> tuple[list[Any], dict[str, Any], str, bool]:
    """``(rules, named conditions, JSONPath of the rules list, whether the file held a single rule)``."""
    data = _load(path)
    if isinstance(data, list):
        return data, {}, "$", False
    if isinstance(data, dict) and "rules" in data and "event" not in data:
        rules = data["rules"]
        if not isinstance(rules, list):
            raise _FileError(f"{path}: $.rules: must be a list of rules")
        conditions = data.get("conditions") or {}
        if not isinstance(conditions, dict):
            raise _FileError(f"{path}: $.conditions: must be an object of named conditions")
        return rules, conditions, "$.rules", False
    return [data], {}, "$", True


def _engine(conditions: dict[str, Any], args: argparse.Namespace, file: Path) -> tuple[Any, list[str]]:
    from coafi.rules import RuleEngine, RuleValidationError

    engine = RuleEngine(allow_undefined_facts=getattr(args, "allow_undefined_facts", False))
    problems: list[str] = []
    for name, condition in conditions.items():
        try:
            engine.set_condition(name, condition)
        except RuleValidationError as exc:
            problems.extend(f"{file}: {p}" for p in exc.problems)
    return engine, problems


def _rule_paths(rules: list[Any], base: str, single: bool) -> list[str]:
    return ["$" if single else f"{base}[{i}]" for i in range(len(rules))]


def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem of every file, each with its JSONPath; 1 if any."""
    from coafi.rules import RuleValidationError

    failed = False
    for file in args.files:
        try:
            rules, conditions, base, single = load_rules_file(file)
        except _FileError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        engine, problems = _engine(conditions, args, file)
        for rule, where in zip(rules, _rule_paths(rules, base, single), strict=True):
            try:
                engine.compile(rule, base=where)
            except RuleValidationError as exc:
                problems.extend(f"{file}: {p}" for p in exc.problems)
        if problems:
            failed = True
            for line in problems:
                print(line, file=sys.stderr)
        else:
            count = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
            named = f", {len(conditions)} named condition{'s' if len(conditions) != 1 else ''}" if conditions else ""
            print(f"ok  {file}: {count}{named}")
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate the rules against the facts; print one JSON object per rule, in the order given."""
    from coafi.rules import RuleEvaluationError, RuleValidationError
    from coafi.rules.engine import to_json_safe

    try:
        rules, conditions, base, single = load_rules_file(args.rules)
        facts = _load(args.facts)
    except _FileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not isinstance(facts, dict):
        print(f"{args.facts}: facts must be a JSON object of fact name to value", file=sys.stderr)
        return 1
    engine, problems = _engine(conditions, args, args.rules)
    compiled = []
    for rule, where in zip(rules, _rule_paths(rules, base, single), strict=True):
        try:
            compiled.append(engine.compile(rule, base=where))
        except RuleValidationError as exc:
            problems.extend(f"{args.rules}: {p}" for p in exc.problems)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 1
    try:
        results = engine.evaluate_all(compiled, facts)
    except RuleEvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by_rule = {id(r._compiled): r for r in results}
    out = []
    for c in compiled:
        r = by_rule[id(c)]
        item: dict[str, Any] = {"name": to_json_safe(r.name), "satisfied": r.satisfied, "event": to_json_safe(r.event)}
        if args.explain:
            item.update(
                {"priority": r.priority, "result": to_json_safe(r.result), "conditions": to_json_safe(r.conditions)}
            )
        out.append(item)
    print(json.dumps(out, indent=None if args.compact else 2, ensure_ascii=False))
    return 0


def _registry(args: argparse.Namespace) -> Any:
    """The deployed registry: ``--table``, else the state table of the stack ``--stack`` (on AWS_ENDPOINT_URL)."""
    from coafi.rules.dynamo import DynamoRuleStore

    table = args.table
    if not table:
        from coafi.deploy import read_outputs

        table = read_outputs(args.stack).state_table_name
    return DynamoRuleStore(table)


def cmd_deploy(args: argparse.Namespace) -> int:
    """Register every rule file of a folder in the deployed registry (what the stack's custom resources do on
    deploy), e.g. against a LocalStack that lacks Lambda-backed custom resources."""
    from coafi.definitions import DefinitionError
    from coafi.rules.deploy import deploy_rule_files

    folder = args.folder or Path.cwd() / "statemachines" / "rules"
    store = _registry(args)
    try:
        ids = deploy_rule_files(store, folder)
    except DefinitionError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    print(f"ok  {len(ids)} rule{'s' if len(ids) != 1 else ''} of {folder} registered in {store.table_name}: "
          f"{', '.join(ids) or 'none'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """The deployed registry's rules (of ``--category``), one JSON object per line."""
    for rule in _registry(args).list(category=args.category):
        print(json.dumps({"id": rule.id, "version": rule.version, "category": rule.category, "enabled": rule.enabled,
                          "priority": rule.priority, "description": rule.description}, ensure_ascii=False))
    return 0


def register(subparsers: Any) -> None:
    """Add ``rules eval`` and ``rules validate`` to an ``argparse`` subparsers object."""
    rules = subparsers.add_parser(
        "rules",
        help="evaluate or validate json-rules-engine rules",
        description="json-rules-engine compatible rules: evaluate them against facts, or validate them.",
    )
    sub = rules.add_subparsers(dest="rules_command", required=True)

    p = sub.add_parser("eval", help="evaluate rules against facts; prints JSON, one object per rule in file order")
    p.add_argument("--rules", type=Path, required=True, help="JSON/YAML: a rule, a list, or {rules, conditions}")
    p.add_argument("--facts", type=Path, required=True, help="JSON/YAML object: fact name -> value")
    p.add_argument("--allow-undefined-facts", action="store_true", help="a missing fact is undefined, not an error")
    p.add_argument("--explain", action="store_true", help="also print priority, result and the condition tree")
    p.add_argument("--compact", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("validate", help="list every problem of rule files with its JSONPath; exit 1 if any")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=cmd_validate)

    for name, func, text in (
        ("deploy", cmd_deploy, "register the rule files of a folder (default statemachines/rules) in the deployed "
                               "registry, as the stack's deploy does"),
        ("list", cmd_list, "list the deployed registry's rules, one JSON object per line"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "deploy":
            p.add_argument("folder", nargs="?", type=Path, help="rule files (default: ./statemachines/rules)")
        else:
            p.add_argument("--category", help="only the rules of this category")
        p.add_argument("--stack", default="Coafi", help="the deployed stack whose state table holds the registry")
        p.add_argument("--table", help="the state table, instead of reading the stack's outputs")
        p.set_defaults(func=func)
