"""``coafi signal`` and ``coafi task complete|fail|heartbeat|ls``: waiting steps of executions (docs/waits.md).

Not to be confused with ``coafi tasks`` (plural), the task scheduler. Wired into the console script by
``coafi.cli.main.build_parser``::

    from coafi.engine import waits_cli
    waits_cli.register(sub)

The state table comes from ``COAFI_TABLE_NAME`` when set, else from the deployed stack's outputs (``--stack``,
else ``$COAFI_STACK_NAME``, else ``Coafi``) on the current endpoint (``AWS_ENDPOINT_URL`` for the local cloud).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from coafi.cli.guard import guarded

_TASK_HELP = (
    "complete or fail a waiting callback step (human approval, external system), by execution and step id or "
    "by task token; NOT the task scheduler, which is `coafi tasks`"
)


def register(subparsers: Any) -> None:
    """Add ``signal`` and ``task`` (with ``complete``, ``fail``, ``heartbeat``, ``ls``) to ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "signal", help="send a named signal to a running execution (buffered until a signal step waits for it)",
        description="Delivers PAYLOAD to the execution's step waiting for signal NAME, or buffers it until such a "
        "step starts waiting. Signals of one name are delivered in the order sent, each exactly once.",
    )
    p.add_argument("execution", metavar="EXECUTION", help="the execution ARN")
    p.add_argument("name", metavar="NAME", help="the signal's name (parameters.signal of the signal step)")
    p.add_argument("--payload", type=_json_value, default=None, help="JSON the step outputs (default null)")
    p.add_argument("--signal-id", default=None,
                   help="idempotency key: resending a signal with the same id delivers it only once")
    _common(p)
    p.set_defaults(func=run_signal)

    task = subparsers.add_parser(
        "task", help=_TASK_HELP,
        description=f"Callback steps wait for completeTask/failTask. {_TASK_HELP[0].upper()}{_TASK_HELP[1:]}.",
    )
    verbs = task.add_subparsers(dest="task_command", required=True, metavar="{complete,fail,heartbeat,ls}")

    p = verbs.add_parser("complete", help="complete a waiting callback step; RESULT becomes its output")
    _target(p)
    p.add_argument("--result", type=_json_value, default=None, help="JSON the step outputs (default null)")
    _common(p)
    p.set_defaults(func=run_complete)

    p = verbs.add_parser("fail", help="fail a waiting callback step with an error (Retry/Catch see its name)")
    _target(p)
    p.add_argument("--error", required=True, help="the error name, e.g. Rejected (at most 256 characters)")
    p.add_argument("--cause", default="", help="a human-readable cause")
    _common(p)
    p.set_defaults(func=run_fail)

    p = verbs.add_parser("heartbeat", help="tell a callback step with heartbeatSeconds that the work goes on")
    _target(p)
    _common(p)
    p.set_defaults(func=run_heartbeat)

    p = verbs.add_parser("ls", help="the callback and signal steps of an execution that wait or waited")
    p.add_argument("execution", metavar="EXECUTION", help="the execution ARN")
    _common(p)
    p.set_defaults(func=run_ls)


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=None, help="the task token (e.g. from the TaskTokenIssued event)")
    p.add_argument("--execution", default=None, help="the execution ARN (with --step)")
    p.add_argument("--step", default=None, help="the callback step's id (with --execution)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default=None, help="stack name (default: $COAFI_STACK_NAME or Coafi)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _waits(args: argparse.Namespace) -> Any:
    from coafi.engine.waits import Waits
    from coafi.state.store import StateStore

    table = os.environ.get("COAFI_TABLE_NAME")
    if not table:
        from coafi.deploy import DEFAULT_STACK, read_outputs

        table = read_outputs(args.stack or os.environ.get("COAFI_STACK_NAME") or DEFAULT_STACK).state_table_name
    return Waits(StateStore(table))


def _user_errors() -> tuple[type[Exception], ...]:
    from coafi.engine.waits import WaitError
    from coafi.state.errors import StateError

    return WaitError, StateError


_guarded = guarded(_user_errors)


def _print(args: argparse.Namespace, outcome: Any, text: str) -> None:
    print(outcome.model_dump_json(indent=2) if args.json else text)


@_guarded
def run_signal(args: argparse.Namespace) -> int:
    from coafi.engine.waits import SignalRequest

    request = SignalRequest(executionId=args.execution, name=args.name, payload=args.payload,
                            signalId=args.signal_id)
    outcome = _waits(args).signal_workflow(request)
    text = {
        "DELIVERED": f"signal {outcome.name} #{outcome.seq} delivered to step {outcome.deliveredTo}",
        "BUFFERED": f"signal {outcome.name} #{outcome.seq} buffered: delivered when a step waits for it",
        "DUPLICATE": f"signal {outcome.name} with id {args.signal_id} was already received (#{outcome.seq})",
    }[outcome.status]
    _print(args, outcome, text)
    return 0


def _task_request(args: argparse.Namespace) -> dict[str, Any]:
    return {"taskToken": args.token, "executionId": args.execution, "stepId": args.step}


@_guarded
def run_complete(args: argparse.Namespace) -> int:
    from coafi.engine.waits import CompleteTaskRequest

    outcome = _waits(args).complete_task(CompleteTaskRequest(**_task_request(args), result=args.result))
    _print(args, outcome, "task completed" + (f": step {outcome.stepId}" if outcome.stepId else ""))
    return 0


@_guarded
def run_fail(args: argparse.Namespace) -> int:
    from coafi.engine.waits import FailTaskRequest

    outcome = _waits(args).fail_task(FailTaskRequest(**_task_request(args), error=args.error, cause=args.cause))
    _print(args, outcome, f"task failed with {args.error}" + (f": step {outcome.stepId}" if outcome.stepId else ""))
    return 0


@_guarded
def run_heartbeat(args: argparse.Namespace) -> int:
    from coafi.engine.waits import HeartbeatRequest

    outcome = _waits(args).heartbeat_task(HeartbeatRequest(**_task_request(args)))
    _print(args, outcome, "heartbeat sent" + (f": step {outcome.stepId} still waiting" if outcome.stepId else ""))
    return 0


@_guarded
def run_ls(args: argparse.Namespace) -> int:
    records = _waits(args).list_waits(args.execution)
    if args.json:
        print(json.dumps([r.model_dump() for r in records], indent=2))
        return 0
    if not records:
        print("no callback or signal step of this execution has started waiting")
    for r in records:
        waits_for = f"signal {r.signal}" if r.stepType == "signal" else "completeTask/failTask"
        print(f"{r.stepId:24} {r.status:10} {waits_for:28} since {r.issuedAt}  token {r.taskToken}")
    return 0
