"""``coafi tasks schedule|cancel|status|ls``: tasks of the deployed stack, from the command line.

Wired into the console script by ``coafi.cli.main.build_parser``::

    from coafi.tasks import cli as tasks_cli
    tasks_cli.register(sub)   # sub = parser.add_subparsers(...)

Resources come from the deployed stack's outputs (``coafi.deploy.read_outputs``, stack ``--stack``, else
``$COAFI_STACK_NAME``, else ``Coafi``) on the current endpoint (``AWS_ENDPOINT_URL`` for the local cloud). With
``COAFI_TASK_QUEUE_URL`` and ``COAFI_TABLE_NAME`` set, those are used instead (``TaskSettings.from_env``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from coafi.cli.guard import fail, guarded
from coafi.tasks.models import TaskRecord, TaskStatus

STATUSES = [s.value.lower() for s in TaskStatus]


def register(subparsers: Any) -> None:
    """Add the ``tasks`` command (and its ``schedule``, ``cancel``, ``status``, ``ls``) to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tasks", help="schedule, cancel and inspect tasks (an action or a workflow, now, later or on a cron)",
        description="Tasks run an action (TYPE = its name) or start a workflow (TYPE = workflow:<id>) now, after "
        "a delay (up to 15 minutes on SQS, longer on EventBridge Scheduler) or on a cron, once each.",
    )
    parser.add_argument("--stack", default=None, help="stack name (default: $COAFI_STACK_NAME or Coafi)")
    verbs = parser.add_subparsers(dest="tasks_command", required=True, metavar="{schedule,cancel,status,ls}")

    p = verbs.add_parser("schedule", help="schedule a task; prints its id")
    p.add_argument("type", help="an action name, or workflow:<workflow id>")
    p.add_argument("--payload", type=_json_value, default={}, help="JSON the task runs with (default {})")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--delay", type=_delay, default=0.0,
                      help="run once after this many seconds (or 90s, 15m, 2h, 3d); default: now")
    when.add_argument("--cron", help="run on every occurrence: cron(...), six cron fields, or rate(...)")
    p.add_argument("--timezone", default="UTC", help="--cron: IANA time zone of the expression (default UTC)")
    p.add_argument("--window", type=int, default=5, help="--cron: flexible window in minutes, 0 = off (default 5)")
    p.add_argument("--id", dest="task_id", default=None, help="the task id (default: generated)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first within a dispatcher batch")
    p.add_argument("--metadata", type=_json_object, default={}, help="JSON object kept with the task")
    p.add_argument("--json", action="store_true", help="print the task record as JSON")
    p.set_defaults(func=run_schedule)

    p = verbs.add_parser("cancel", help="cancel a task that has not been dispatched yet (or a cron task)")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_cancel)

    p = verbs.add_parser("status", help="a task's record: status, times, target, output or error")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_status)

    p = verbs.add_parser("ls", help="the newest tasks, newest first")
    p.add_argument("--status", choices=STATUSES, type=str.lower, default=None)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ls)


# -- argument types ---------------------------------------------------------------------------------------------
def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object")
    return value


def _delay(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        from coafi.local.schedules import parse_duration

        try:
            seconds = parse_duration(text).total_seconds()
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("cannot be negative")
    return seconds


# -- commands ---------------------------------------------------------------------------------------------------
def _scheduler(args: argparse.Namespace) -> Any:
    from coafi.tasks.scheduler import TaskScheduler
    from coafi.tasks.settings import TaskSettings

    if os.environ.get("COAFI_TASK_QUEUE_URL") and os.environ.get("COAFI_TABLE_NAME"):
        return TaskScheduler(TaskSettings.from_env())
    return TaskScheduler(TaskSettings.from_stack(args.stack))


def _user_errors() -> tuple[type[Exception], ...]:
    from coafi.tasks.errors import TaskError

    return TaskError, ValueError


_guarded = guarded(_user_errors)


@_guarded
def run_schedule(args: argparse.Namespace) -> int:
    from coafi.tasks.models import Task

    values: dict[str, Any] = {"type": args.type, "payload": args.payload, "priority": args.priority,
                              "metadata": args.metadata}
    if args.task_id:
        values["id"] = args.task_id
    task = Task.model_validate(values)
    scheduler = _scheduler(args)
    if args.cron:
        record = scheduler.schedule_cron_task(task, args.cron, timezone=args.timezone, window_minutes=args.window)
    else:
        record = scheduler.schedule_task_with_delay(task, args.delay)
    if args.json:
        print(record.model_dump_json(indent=2))
    else:
        when = f"on {record.cron} ({record.timezone})" if record.cron else f"at {_time(record.runAt)}"
        print(f"{record.id}  {record.status.value}  {record.type}  {when}  via {record.route.value}")
    return 0


@_guarded
def run_cancel(args: argparse.Namespace) -> int:
    from coafi.tasks.errors import TaskNotFound

    scheduler = _scheduler(args)
    cancelled = scheduler.cancel_task(args.task_id)
    status: str | None = None
    if not cancelled:
        try:
            status = scheduler.get_task_status(args.task_id, refresh=False).status.value
        except TaskNotFound:
            status = None
    if args.json:
        print(json.dumps({"taskId": args.task_id, "cancelled": cancelled, "status": status}))
    elif cancelled:
        print(f"{args.task_id}  CANCELLED")
    elif status is None:
        print(f"no task '{args.task_id}'", file=sys.stderr)
    else:
        print(f"{args.task_id} was not cancelled: it is {status} (only SCHEDULED or DELAYED tasks can be)",
              file=sys.stderr)
    return 0 if cancelled else 1


@_guarded
def run_status(args: argparse.Namespace) -> int:
    record = _scheduler(args).get_task_status(args.task_id)
    if args.json:
        print(record.model_dump_json(indent=2))
        return 0
    for label, value in _describe(record):
        print(f"{label:<12} {value}")
    return 0


@_guarded
def run_ls(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return fail("--limit must be at least 1")
    records = _scheduler(args).list_tasks(args.status, limit=args.limit)
    if args.json:
        print(json.dumps([json.loads(r.model_dump_json()) for r in records], indent=2))
        return 0
    if not records:
        print("no tasks" + (f" with status {args.status.upper()}" if args.status else ""))
        return 0
    rows = [(r.id, r.status.value, r.type, _time(r.runAt) if r.route.value != "cron" else r.cron or "",
             _time(r.createdAt)) for r in records]
    headers = ("ID", "STATUS", "TYPE", "WHEN", "CREATED")
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"


def _describe(record: TaskRecord) -> list[tuple[str, str]]:
    lines = [("id", record.id), ("type", record.type), ("status", record.status.value),
             ("route", record.route.value)]
    if record.cron:
        lines.append(("cron", f"{record.cron} ({record.timezone})"))
        lines.append(("runs", f"{record.runCount}" + (f", last {record.lastOccurrence} "
                                                      f"{record.lastRunStatus.value}" if record.lastRunStatus
                                                      else "")))
    else:
        lines.append(("run at", _time(record.runAt)))
    lines += [("created", _time(record.createdAt)), ("dispatched", _time(record.dispatchedAt)),
              ("ended", _time(record.endedAt))]
    if record.target:
        lines.append(("target", record.target + (f" (worker {record.worker})" if record.worker else "")))
    if record.executionArn:
        lines.append(("execution", record.executionArn))
    lines.append(("payload", json.dumps(record.payload)))
    if record.output is not None:
        lines.append(("output", json.dumps(record.output)[:2000]))
    if record.error is not None:
        lines.append(("error", f"{record.error.type}: {record.error.message}"))
    return lines
