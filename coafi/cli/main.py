"""``coafi``: validate, compile and draw workflow definitions; run the local cloud; deploy; demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from coafi.definitions import DefinitionError


def _project_root() -> Path:
    from coafi.definitions import find_project_root

    return find_project_root(Path.cwd()) or Path.cwd()


def cmd_validate(args: argparse.Namespace) -> int:
    from coafi.definitions import load_definitions

    paths = args.paths or [_project_root() / "statemachines"]
    from coafi.rules.decisions import workflow_rule_problems

    rule_problems, rule_count = workflow_rule_problems(paths)  # rule files in <folder>/rules, rule references
    try:
        definitions = load_definitions(paths)
    except DefinitionError as exc:
        raise DefinitionError(exc.problems + rule_problems) from None
    if rule_problems:
        raise DefinitionError(rule_problems)
    for d in definitions:
        print(f"ok  {d.id} v{d.version}: {len(d.steps)} steps")
    if rule_count:
        print(f"ok  {rule_count} registry rule{'s' if rule_count != 1 else ''}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from coafi.compiler import compile_workflow
    from coafi.definitions import load_definition

    compiled = compile_workflow(load_definition(args.file))
    print(compiled.to_json(indent=None if args.compact else 2))
    return 0


def cmd_diagram(args: argparse.Namespace) -> int:
    from coafi.definitions import load_definition

    definition = load_definition(args.file)
    if args.format == "svg":
        from coafi.compiler.svg import svg

        print(svg(definition), end="")
    else:
        from coafi.compiler.diagram import mermaid

        print(mermaid(definition), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from coafi.definitions import WorkflowDefinition

    schema = WorkflowDefinition.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "COAFI workflow definition"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from coafi.local import harness

    root = _project_root()
    if args.action in ("clock", "schedules"):
        return _local_time(args, root)
    if args.action == "up":
        info = harness.up(project_root=root)
        print(f"local cloud {'started' if info.started else 'already running'} at {info.endpoint}")
        print(f"  export AWS_ENDPOINT_URL={info.endpoint}")
        return 0
    if args.action == "down":
        stopped = harness.down(project_root=root)
        print("local cloud stopped" if stopped else "no local cloud of this project was running")
        return 0
    status = harness.status(project_root=root)
    print(status.model_dump_json(indent=2) if hasattr(status, "model_dump_json") else status)
    return 0 if getattr(status, "running", False) else 3


def _local_time(args: argparse.Namespace, root: Path) -> int:
    from coafi.local import schedules

    if args.action == "clock":
        clock = schedules.local_clock(root)
        if args.verb == "advance":
            if not args.duration:
                raise SystemExit("coafi local clock advance needs a duration, e.g. 3d, 2h, 15m, 90s")
            clock.advance(schedules.parse_duration(args.duration))
        elif args.verb == "reset":
            clock.reset()
        print(f"local clock: {clock.now().isoformat(timespec='seconds')} (offset {clock.offset()})")
        return 0
    fired = schedules.tick(root)
    for f in fired:
        print(f"{'fired' if f.ok else 'FAILED'}  {f.group}/{f.schedule} @ {f.scheduled_time.isoformat()} -> {f.target}"
              + (f"  {f.error}" if f.error else ""))
    print(f"{len(fired)} occurrence(s) fired")
    return 0 if all(f.ok for f in fired) else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    from coafi.deploy import deploy

    outputs = deploy(local=args.local, project_root=_project_root())
    print(json.dumps(outputs.model_dump(), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from coafi.demo import run_demo

    return run_demo(project_root=_project_root(), keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coafi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check definitions; every problem is listed with file, step and field")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: statemachines/)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("compile", help="print the Amazon States Language of a definition")
    p.add_argument("file", type=Path)
    p.add_argument("--compact", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("diagram", help="print a picture of a definition: a Mermaid flowchart or an SVG image")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=["mermaid", "svg"], default="mermaid",
                   help="mermaid (default): flowchart text for Markdown; svg: a standalone image")
    p.set_defaults(func=cmd_diagram)

    p = sub.add_parser("schema", help="print the JSON Schema of the definition format (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "local", help="the embedded local cloud (LocalStack on this host, no Docker)",
        description="up/down/status: the embedded LocalStack. clock show|advance DURATION|reset: the local clock "
        "that schedules fire on (advance 3d makes a three-day delay due now). schedules tick: fire due "
        "EventBridge Scheduler schedules now (the embedded cloud also does so every second).",
    )
    p.add_argument("action", choices=["up", "down", "status", "clock", "schedules"])
    p.add_argument("verb", nargs="?", default="show", help="clock: show|advance|reset; schedules: tick")
    p.add_argument("duration", nargs="?", help="for clock advance: 90s, 15m, 2h, 3d")
    p.set_defaults(func=cmd_local)

    p = sub.add_parser("deploy", help="deploy the CDK app (to AWS, or with --local to the local cloud)")
    p.add_argument("--local", action="store_true", help="deploy to the embedded (or AWS_ENDPOINT_URL) LocalStack")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("demo", help="local cloud up, deploy, trigger content-generation by event, show timeline")
    p.add_argument("--keep", action="store_true", help="leave the local cloud running afterwards")
    p.set_defaults(func=cmd_demo)
    # Commands of other capabilities register themselves (their modules import lazily what they need).
    from coafi import cost_cli
    from coafi.engine import cli as engine_cli
    from coafi.engine import waits_cli  # coafi signal, coafi task complete|fail|heartbeat|ls (docs/waits.md)
    from coafi.rules import cli as rules_cli
    from coafi.saga import cli as saga_cli
    from coafi.tasks import cli as tasks_cli

    rules_cli.register(sub)
    tasks_cli.register(sub)
    cost_cli.register(sub)
    engine_cli.register(sub)
    waits_cli.register(sub)
    saga_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except DefinitionError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except ValueError as exc:  # DefinitionTooLarge and other compile-time refusals
        if type(exc).__name__ != "DefinitionTooLarge":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
