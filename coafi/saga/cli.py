"""``coafi dlq ls|show|redrive`` and ``coafi redrive EXECUTION`` (docs/saga-and-dlq.md).

Wired into the console script by ``coafi.cli.main.build_parser`` (``saga_cli.register(sub)``). The queue is the
deployed stack's dead-letter queue (output ``DeadLetterQueueUrl`` of stack ``--stack``, else
``$COAFI_STACK_NAME``, else ``Coafi``) on the current endpoint, or ``--queue URL|ARN``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from coafi.cli.guard import guarded


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq", help="inspect dead-letter queues and send their messages back where they came from",
        description="Messages that could not be delivered or processed (task queue after 5 receives, EventBridge "
        "and Scheduler targets, asynchronous Lambda invocations) wait in the app's dead-letter queue.",
    )
    parser.add_argument("--stack", default=None, help="stack name (default: $COAFI_STACK_NAME or Coafi)")
    parser.add_argument("--queue", default=None, help="a dead-letter queue URL or ARN (default: the stack's)")
    verbs = parser.add_subparsers(dest="dlq_command", required=True, metavar="{ls,show,redrive}")
    p = verbs.add_parser("ls", help="the dead-letter queue(s): messages waiting, in flight, source queues")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ls)
    p = verbs.add_parser("show", help="look at messages without removing them: origin, target, error, body")
    p.add_argument("--max", type=int, default=10, help="at most this many messages (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_show)
    p = verbs.add_parser("redrive", help="send messages back to where they came from; each is deleted only "
                         "after its re-send was accepted")
    p.add_argument("--id", dest="ids", action="append", default=[], help="only this message id (repeatable)")
    p.add_argument("--max", type=int, default=100, help="at most this many messages (default 100)")
    p.add_argument("--to", default=None, help="send to this queue (URL or ARN) instead of each message's origin")
    p.add_argument("--dry-run", action="store_true", help="say where each message would go; change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_redrive)

    p = subparsers.add_parser(
        "redrive", help="redrive a failed execution (Step Functions RedriveExecution)",
        description="Continue a FAILED, TIMED_OUT or ABORTED execution from its failed states (RedriveExecution). "
        "Where that API is missing (LocalStack 2026.3, moto), --restart starts a new execution with the same "
        "input instead, which does not run again the actions that succeeded and were not compensated.",
    )
    p.add_argument("execution", metavar="EXECUTION", help="the execution ARN")
    p.add_argument("--restart", action="store_true",
                   help="if RedriveExecution is not available, start a new execution with the same input that "
                   "reuses the outputs of the steps that succeeded and were not compensated")
    p.add_argument("--stack", default=None, help="stack name (default: $COAFI_STACK_NAME or Coafi)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_redrive_execution)


def _user_errors() -> tuple[type[Exception], ...]:
    from coafi.saga.dlq import DeadLetterError
    from coafi.saga.redrive import RedriveError

    return DeadLetterError, RedriveError


_guarded = guarded(_user_errors)


def _queues(args: argparse.Namespace) -> Any:
    from coafi.saga.dlq import DeadLetterQueues

    return DeadLetterQueues([args.queue]) if args.queue else DeadLetterQueues.from_stack(args.stack)


@_guarded
def run_ls(args: argparse.Namespace) -> int:
    queues = _queues(args).list_queues()
    if args.json:
        print(json.dumps([q.model_dump() for q in queues], indent=2))
        return 0
    for q in queues:
        sources = ", ".join(s.rsplit("/", 1)[-1] for s in q.sources) or "none"
        print(f"{q.name}  {q.messages} waiting  {q.inFlight} in flight  sources: {sources}  {q.url}")
    return 0


@_guarded
def run_show(args: argparse.Namespace) -> int:
    letters = _queues(args).show(limit=args.max)
    if args.json:
        print(json.dumps([{**x.model_dump(), "body": x.payload()} for x in letters], indent=2, default=str))
        return 0
    if not letters:
        print("no messages")
    for x in letters:
        print(f"{x.messageId}  from {x.source}  -> {x.target or '?'}  received {x.receiveCount}x")
        if x.error:
            print(f"    error: {x.error}")
        body = x.body if len(x.body) <= 300 else x.body[:300] + "..."
        print(f"    body: {body}")
    return 0


@_guarded
def run_redrive(args: argparse.Namespace) -> int:
    report = _queues(args).redrive(limit=args.max, message_ids=args.ids or None, to=args.to, dry_run=args.dry_run)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        for o in report.outcomes:
            print(f"{'redriven' if o.redriven else 'kept    '}  {o.messageId}  {o.source} -> {o.target or '?'}  "
                  f"{o.detail}")
        print(f"{report.redriven} redriven, {len(report.failed)} kept")
    return 0 if args.dry_run or not report.failed else 1


@_guarded
def run_redrive_execution(args: argparse.Namespace) -> int:
    from coafi.saga.redrive import redrive_execution

    store = None
    if args.restart:
        import os

        from coafi.deploy import DEFAULT_STACK, DeployError, read_outputs
        from coafi.saga.redrive import RedriveError
        from coafi.state.store import StateStore

        name = args.stack or os.environ.get("COAFI_STACK_NAME") or DEFAULT_STACK
        try:
            store = StateStore(read_outputs(name).state_table_name)
        except DeployError as exc:
            raise RedriveError(f"{exc} (--restart reads the failed execution's steps from the stack's state "
                               "table; pass --stack)") from None
    result = redrive_execution(args.execution, restart=args.restart, store=store)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(f"{result.mode}  {result.executionArn}  ({result.detail})")
    return 0
