"""``coafi start|status|history|ls|terminate|query|watch|workflows``: the engine API from the command line.

Wired into the console script by ``coafi.cli.main.build_parser`` (``engine_cli.register(sub)``). Every command
takes ``--stack`` (default ``$COAFI_STACK_NAME`` or ``Coafi``; the stack's outputs on the current endpoint,
``AWS_ENDPOINT_URL`` for the local cloud) and ``--json`` (one JSON document on stdout, for scripts).
Exit codes: 0 ok (``--wait``/``watch``: the execution SUCCEEDED), 1 refused or the execution did not succeed,
2 the stack or AWS could not be reached.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from coafi.cli.guard import guarded

if TYPE_CHECKING:
    from coafi.engine.client import WorkflowClient
    from coafi.state import StepRecord, WorkflowState

STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


def register(subparsers: Any) -> None:
    """Add the engine commands to the ``coafi`` parser's ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=None, help="stack name (default: $COAFI_STACK_NAME or Coafi)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = subparsers.add_parser("start", parents=[common], help="start a workflow (its live version, or --version)")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--input", type=_json_value, default={}, help="the workflow input, JSON (default {})")
    p.add_argument("--idempotency-key", default=None,
                   help="the same key returns the same execution, never a second one")
    p.add_argument("--version", default=None, help="a registered version (default: the live one)")
    p.add_argument("--wait", action="store_true", help="follow the execution until it ends (exit 0 if it succeeded)")
    p.add_argument("--timeout", type=float, default=None, help="--wait: give up after this many seconds")
    p.set_defaults(func=_guarded(run_start))

    p = subparsers.add_parser("status", parents=[common], help="an execution's status, steps and result")
    p.add_argument("execution", metavar="EXECUTION", help="execution ARN")
    p.set_defaults(func=_guarded(run_status))

    p = subparsers.add_parser("history", parents=[common], help="an execution's events, oldest first")
    p.add_argument("execution", metavar="EXECUTION")
    p.set_defaults(func=_guarded(run_history))

    p = subparsers.add_parser("ls", parents=[common], help="executions, newest first (by workflow, status, time)")
    p.add_argument("--workflow", default=None, help="only this workflow id")
    p.add_argument("--status", choices=STATUSES, type=str.upper, action="append", default=None,
                   help="only this status (repeat for several)")
    p.add_argument("--since", default=None, help="started at or after this ISO time")
    p.add_argument("--until", default=None, help="started before this ISO time")
    p.add_argument("--limit", type=int, default=20, help="executions per page (default 20)")
    p.add_argument("--next-token", default=None, help="the token a previous page printed")
    p.set_defaults(func=_guarded(run_ls))

    p = subparsers.add_parser("terminate", parents=[common], help="stop a running execution, recording why")
    p.add_argument("execution", metavar="EXECUTION")
    p.add_argument("--reason", required=True, help="recorded in the execution's state and history")
    p.set_defaults(func=_guarded(run_terminate))

    p = subparsers.add_parser("query", parents=[common],
                              help="answer a name from the recorded state (status, currentSteps, variables.x, "
                                   "steps.<id>.output, ...) without touching the execution")
    p.add_argument("execution", metavar="EXECUTION")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_guarded(run_query))

    p = subparsers.add_parser("watch", parents=[common], help="live progress of an execution, step by step")
    p.add_argument("execution", metavar="EXECUTION")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.set_defaults(func=_guarded(run_watch))

    p = subparsers.add_parser("workflows", parents=[common], help="the workflow registry: ls, register, unregister, "
                              "live", description="ls: registered workflows and versions (* = live). register "
                              "ID VERSION ARN [--no-live]. unregister ID [VERSION]. live ID VERSION.")
    p.add_argument("verb", choices=["ls", "register", "unregister", "live"], nargs="?", default="ls")
    p.add_argument("args", nargs="*", metavar="ARG")
    p.add_argument("--no-live", action="store_true", help="register: do not make the version live")
    p.set_defaults(func=_guarded(run_workflows))


# -- helpers -----------------------------------------------------------------------------------------------
def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--input is not JSON: {exc}") from None


def _client(args: argparse.Namespace) -> WorkflowClient:
    from coafi.engine.client import WorkflowClient

    return WorkflowClient.from_stack(args.stack)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _user_errors() -> tuple[type[Exception], ...]:
    from coafi.engine.errors import EngineError
    from coafi.state.errors import StateError

    return EngineError, StateError, ValueError, TimeoutError


_guarded = guarded(_user_errors)


def _step_line(step: StepRecord) -> str:
    took = f" {step.durationMs} ms" if step.durationMs is not None and step.status != "RUNNING" else ""
    attempt = f" (attempt {step.attempts})" if step.attempts > 1 else ""
    error = f"  {step.error.type}: {step.error.message}" if step.error else ""
    return f"  {step.status:<9} {step.stepId}{attempt}{took}{error}"


def _summary(state: WorkflowState) -> str:
    from coafi.cli.render import timeline_table

    lines = [
        f"execution  {state.executionId}",
        f"workflow   {state.workflowId} {state.workflowVersion}".rstrip(),
        f"status     {state.status}",
        f"started    {state.startTime.isoformat() if state.startTime else '-'}",
        f"ended      {state.endTime.isoformat() if state.endTime else '-'}",
    ]
    if state.currentSteps:
        lines.append(f"running    {', '.join(state.currentSteps)}")
    if state.error:
        lines.append(f"error      {state.error.type}: {state.error.message}")
    if state.steps:
        lines.append(timeline_table(state.steps))
    return "\n".join(lines)


def _follow(client: WorkflowClient, execution: str, args: argparse.Namespace, interval: float) -> WorkflowState:
    final: WorkflowState | None = None
    for update in client.watch(execution, poll_seconds=interval, timeout=args.timeout):
        if update.kind == "step" and update.step is not None and not args.json:
            print(_step_line(update.step), flush=True)
        elif update.state is not None:
            final = update.state
    assert final is not None
    return final


# -- commands ----------------------------------------------------------------------------------------------
def run_start(args: argparse.Namespace) -> int:
    from coafi.engine.client import StartOptions

    client = _client(args)
    result = client.start_workflow(args.workflow, args.input,
                                   StartOptions(idempotency_key=args.idempotency_key, version=args.version))
    if not args.json:
        verb = "started" if result.started else "already started (same idempotency key)"
        print(f"{verb}: {result.executionId}", flush=True)
    if not args.wait:
        if args.json:
            _print_json(result.model_dump(mode="json"))
        return 0
    final = _follow(client, result.executionId, args, 1.0)
    if args.json:
        _print_json({**result.model_dump(mode="json"), "state": final.model_dump(mode="json")})
    else:
        print(f"{final.status}" + (f": {final.error.type}: {final.error.message}" if final.error else ""))
    return 0 if final.status == "SUCCEEDED" else 1


def run_status(args: argparse.Namespace) -> int:
    state = _client(args).get_workflow_status(args.execution)
    if args.json:
        _print_json(state.model_dump(mode="json"))
    else:
        print(_summary(state))
    return 0


def run_history(args: argparse.Namespace) -> int:
    events = _client(args).get_execution_history(args.execution)
    if args.json:
        _print_json([e.model_dump(mode="json") for e in events])
        return 0
    for event in events:
        step = f" {event.stepId}" if event.stepId else ""
        error = f"  {event.error.type}: {event.error.message}" if event.error else ""
        print(f"{event.timestamp.isoformat(timespec='milliseconds')}  {event.type}{step}{error}")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    page = _client(args).find_executions(workflow_id=args.workflow, status=args.status, start_after=args.since,
                                         start_before=args.until, limit=args.limit, next_token=args.next_token)
    if args.json:
        _print_json(page.model_dump(mode="json"))
        return 0
    for e in page.executions:
        started = e.startTime.isoformat(timespec="seconds") if e.startTime else "-"
        print(f"{started}  {e.status:<9} {e.workflowId:<24} {e.executionId}")
    if not page.executions:
        print("no executions")
    if page.next_token:
        print(f"more: --next-token {page.next_token}")
    return 0


def run_terminate(args: argparse.Namespace) -> int:
    state = _client(args).terminate_workflow(args.execution, args.reason)
    if args.json:
        _print_json(state.model_dump(mode="json"))
    else:
        print(f"{state.status}: {args.execution} ({args.reason})")
    return 0


def run_query(args: argparse.Namespace) -> int:
    value = _client(args).query_workflow(args.execution, args.name)
    if args.json or not isinstance(value, str):
        _print_json(value)
    else:
        print(value)
    return 0


def run_watch(args: argparse.Namespace) -> int:
    client = _client(args)
    if not args.json:
        print(f"watching {args.execution}", flush=True)
    final = _follow(client, args.execution, args, args.interval)
    if args.json:
        _print_json(final.model_dump(mode="json"))
    else:
        print(f"{final.status}" + (f": {final.error.type}: {final.error.message}" if final.error else ""))
    return 0 if final.status == "SUCCEEDED" else 1


def run_workflows(args: argparse.Namespace) -> int:
    wanted = {"ls": 0, "register": 3, "unregister": (1, 2), "live": 2}[args.verb]
    counts = wanted if isinstance(wanted, tuple) else (wanted,)
    if len(args.args) not in counts:
        raise ValueError(f"workflows {args.verb} takes {' or '.join(map(str, counts))} arguments, not "
                         f"{len(args.args)}: see coafi workflows --help")
    client = _client(args)
    result: Any
    if args.verb == "register":
        workflow_id, version, arn = args.args
        result = client.register_workflow(workflow_id, version, arn, make_live=not args.no_live, source="cli")
        result = result.model_dump(mode="json")
    elif args.verb == "unregister":
        result = {"unregistered": client.unregister_workflow(args.args[0], args.args[1] if len(args.args) > 1
                                                             else None)}
    elif args.verb == "live":
        result = client.registry.set_live(args.args[0], args.args[1]).model_dump(mode="json")
    else:
        workflows = client.list_workflows()
        if args.json:
            _print_json([w.model_dump(mode="json") for w in workflows])
            return 0
        for workflow in workflows:
            for v in workflow.versions:
                print(f"{'*' if v.live else ' '} {workflow.workflowId:<24} {v.version:<10} {v.stateMachineArn}")
        if not workflows:
            print("no registered workflows (deploy with coafi deploy)")
        return 0
    if args.json:
        _print_json(result)
    else:
        print(json.dumps(result, default=str))
    return 0
