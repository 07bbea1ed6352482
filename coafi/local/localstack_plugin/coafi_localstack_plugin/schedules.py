"""Fire EventBridge Scheduler schedules on a local cloud: LocalStack stores schedules but never fires them.

Self-contained (standard library + boto3): the embedded LocalStack runs :class:`LocalScheduler` in a thread
(``hooks.py``), and COAFI runs the same code against any endpoint (``coafi local schedules tick``, tests).

Time is the host clock plus an offset kept in a JSON file, so ``coafi local clock advance 3d`` makes a
three-day delay due at once. What is fired, as on AWS:
* ``at(...)`` one-time schedules fire once; with ``ActionAfterCompletion: DELETE`` they are then deleted.
* ``rate(...)`` fires every period from the schedule's creation; ``cron(...)`` at each matching minute, in the
  schedule's time zone. Occurrences missed while the clock jumped are fired one by one (at most
  ``MAX_CATCH_UP`` per schedule and tick; the rest are skipped with a warning).
* Targets: Step Functions state machines, SQS queues, Lambda functions (async), EventBridge buses, SNS topics.
  ``<aws.scheduler.*>`` context attributes in the input are substituted. A target that keeps failing after
  its retry policy's attempts (at most ``MAX_LOCAL_ATTEMPTS`` locally) goes to the target's dead-letter queue
  with AWS's ``ERROR_CODE``/``ERROR_MESSAGE`` attributes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

LOG = logging.getLogger("coafi.local.schedules")

MAX_CATCH_UP = 100
MAX_LOCAL_ATTEMPTS = 3

# -- clock ---------------------------------------------------------------------------------------------------


class Clock:
    """Host time plus an offset stored in ``path`` (``{"offsetSeconds": n}``); no file means no offset."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def offset(self) -> timedelta:
        if self.path is None or not self.path.exists():
            return timedelta(0)
        try:
            return timedelta(seconds=float(json.loads(self.path.read_text())["offsetSeconds"]))
        except (ValueError, KeyError, TypeError):
            LOG.warning("unreadable clock file %s; using the host clock", self.path)
            return timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    def advance(self, by: timedelta) -> timedelta:
        if self.path is None:
            raise ValueError("this clock has no file to keep its offset in")
        offset = self.offset() + by
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offsetSeconds": offset.total_seconds()}))
        tmp.replace(self.path)
        return offset

    def reset(self) -> None:
        if self.path is not None and self.path.exists():
            self.path.unlink()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s*$")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``3d`` (also ``3 days``)."""
    m = _DURATION.match(text.lower())
    if not m:
        raise ValueError(f"duration {text!r} is not like 90s, 15m, 2h or 3d")
    value, unit = float(m.group(1)), m.group(2)[0]
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


# -- expressions ---------------------------------------------------------------------------------------------

_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}  # EventBridge: 1 = Sunday


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """Values a cron field allows; None for ``*``/``?`` (any)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"cron value {part!r} outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    upper = text.upper()
    if names and upper in names:
        return names[upper]
    return int(text)


@dataclass(frozen=True)
class Cron:
    minutes: set[int] | None
    hours: set[int] | None
    days: set[int] | None
    months: set[int] | None
    weekdays: set[int] | None
    years: set[int] | None
    last_day: bool = False

    @classmethod
    def parse(cls, body: str) -> Cron:
        parts = body.split()
        if len(parts) != 6:
            raise ValueError(f"cron({body}) needs 6 fields: minutes hours day-of-month month day-of-week year")
        minute, hour, dom, month, dow, year = parts
        return cls(
            _field(minute, 0, 59), _field(hour, 0, 23),
            None if dom == "L" else _field(dom, 1, 31), _field(month, 1, 12, _MONTHS),
            _field(dow.split("#")[0].rstrip("L") or "*", 1, 7, _DAYS), _field(year, 1970, 2199),
            last_day=dom == "L",
        )

    def matches(self, t: datetime) -> bool:
        weekday = (t.isoweekday() % 7) + 1  # Monday=2 ... Sunday=1
        if self.last_day and (t + timedelta(days=1)).month == t.month:
            return False
        return all((
            self.minutes is None or t.minute in self.minutes,
            self.hours is None or t.hour in self.hours,
            self.days is None or t.day in self.days,
            self.months is None or t.month in self.months,
            self.weekdays is None or weekday in self.weekdays,
            self.years is None or t.year in self.years,
        ))


@dataclass(frozen=True)
class Expression:
    kind: str  # at | rate | cron
    at: datetime | None = None
    every: timedelta | None = None
    cron: Cron | None = None

    @classmethod
    def parse(cls, text: str, tz: str = "UTC") -> Expression:
        text = text.strip()
        zone = ZoneInfo(tz or "UTC")
        if text.startswith("at(") and text.endswith(")"):
            moment = datetime.fromisoformat(text[3:-1]).replace(tzinfo=zone)
            return cls("at", at=moment.astimezone(UTC))
        if text.startswith("rate(") and text.endswith(")"):
            value, unit = text[5:-1].split()
            seconds = {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]
            return cls("rate", every=timedelta(seconds=int(value) * seconds))
        if text.startswith("cron(") and text.endswith(")"):
            return cls("cron", cron=Cron.parse(text[5:-1]))
        raise ValueError(f"unsupported schedule expression {text!r}")

    def occurrences(self, after: datetime, until: datetime, *, anchor: datetime, tz: str = "UTC") -> Iterator[datetime]:
        """Fire times in ``(after, until]`` (UTC); ``anchor`` is when a rate schedule started counting."""
        if self.kind == "at":
            assert self.at is not None
            if after < self.at <= until:
                yield self.at
            return
        if self.kind == "rate":
            assert self.every is not None
            step = self.every
            n = max(1, int((after - anchor) / step) + 1)
            t = anchor + n * step
            while t <= until:
                yield t
                t += step
            return
        assert self.cron is not None
        zone = ZoneInfo(tz or "UTC")
        t = (after.astimezone(zone).replace(second=0, microsecond=0) + timedelta(minutes=1))
        end = until.astimezone(zone)
        while t <= end:
            if self.cron.matches(t):
                yield t.astimezone(UTC)
            t += timedelta(minutes=1)


# -- firing --------------------------------------------------------------------------------------------------

ClientFactory = Callable[[str], Any]


@dataclass
class Fired:
    schedule: str
    group: str
    target: str
    scheduled_time: datetime
    ok: bool
    error: str = ""
    dead_lettered: bool = False


@dataclass
class LocalScheduler:
    """Fires due schedules of every group through ``client(service)`` (boto3 clients of the local cloud)."""

    client: ClientFactory
    clock: Clock
    state_path: Path | None = None
    _state: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _load(self) -> None:
        if self.state_path is not None and self.state_path.exists():
            try:
                self._state = json.loads(self.state_path.read_text())
            except ValueError:
                self._state = {}

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One ticker at a time across processes (the LocalStack thread and ``coafi local schedules tick``)."""
        with self._lock:
            if self.state_path is None:
                yield
                return
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.state_path.with_suffix(".lock"), "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    self._load()
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def tick(self) -> list[Fired]:
        """Fire everything due by the clock's now; returns what was fired."""
        with self._exclusive():
            now = self.clock.now()
            fired: list[Fired] = []
            scheduler = self.client("scheduler")
            for summary in self._schedules(scheduler):
                fired.extend(self._fire_due(scheduler, summary, now))
            self._save()
            return fired

    def _schedules(self, scheduler: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = scheduler.list_schedules(**({"NextToken": token} if token else {}))
            yield from page.get("Schedules", [])
            token = page.get("NextToken")
            if not token:
                return

    def _fire_due(self, scheduler: Any, summary: dict[str, Any], now: datetime) -> list[Fired]:
        name, group = summary["Name"], summary.get("GroupName", "default")
        schedule = scheduler.get_schedule(Name=name, GroupName=group)
        if schedule.get("State", "ENABLED") != "ENABLED":
            return []
        key = f"{group}/{name}"
        tz = schedule.get("ScheduleExpressionTimezone") or "UTC"
        expression = Expression.parse(schedule["ScheduleExpression"], tz)
        created = _utc(schedule.get("CreationDate")) or now
        start = _utc(schedule.get("StartDate"))
        end = _utc(schedule.get("EndDate"))
        anchor = start or created
        last = datetime.fromisoformat(self._state[key]) if key in self._state else (start or created)
        until = min(now, end) if end else now
        due = list(expression.occurrences(last, until, anchor=anchor, tz=tz))
        if len(due) > MAX_CATCH_UP:
            LOG.warning("%s: %d occurrences due; firing the last %d", key, len(due), MAX_CATCH_UP)
            due = due[-MAX_CATCH_UP:]
        results = [self._fire(schedule, key, when) for when in due]
        if due:
            self._state[key] = due[-1].isoformat()
        if expression.kind == "at" and due and schedule.get("ActionAfterCompletion") == "DELETE":
            scheduler.delete_schedule(Name=name, GroupName=group)
            self._state.pop(key, None)
        return results

    def _fire(self, schedule: dict[str, Any], key: str, when: datetime) -> Fired:
        target = schedule["Target"]
        arn = target["Arn"]
        attempts = min(MAX_LOCAL_ATTEMPTS, 1 + int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)))
        error = ""
        for attempt in range(1, attempts + 1):
            payload = _substitute(target.get("Input", ""), schedule, when, attempt)
            try:
                self._invoke(arn, target, payload)
                LOG.info("fired %s at %s -> %s", key, when.isoformat(), arn)
                return Fired(schedule["Name"], schedule.get("GroupName", "default"), arn, when, True)
            except Exception as exc:  # the target's own failure: retried, then dead-lettered
                error = f"{type(exc).__name__}: {exc}"
                time.sleep(min(0.2 * attempt, 1.0))
        dlq = target.get("DeadLetterConfig", {}).get("Arn")
        dead = False
        if dlq:
            self._send_to_dlq(dlq, schedule, arn, error, _substitute(target.get("Input", ""), schedule, when, 1))
            dead = True
        LOG.warning("schedule %s failed to reach %s: %s%s", key, arn, error, " (dead-lettered)" if dead else "")
        return Fired(schedule["Name"], schedule.get("GroupName", "default"), arn, when, False, error, dead)

    def _invoke(self, arn: str, target: dict[str, Any], payload: str) -> None:
        service = arn.split(":")[2]
        if service == "states":
            self.client("stepfunctions").start_execution(stateMachineArn=arn, input=payload or "{}")
        elif service == "sqs":
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=arn.split(":")[5], QueueOwnerAWSAccountId=arn.split(":")[4])["QueueUrl"]
            kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": payload or "{}"}
            group_id = target.get("SqsParameters", {}).get("MessageGroupId")
            if group_id:
                kwargs["MessageGroupId"] = group_id
            sqs.send_message(**kwargs)
        elif service == "lambda":
            self.client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=(payload or "{}").encode())
        elif service == "events":
            params = target.get("EventBridgeParameters", {})
            result = self.client("events").put_events(Entries=[{
                "EventBusName": arn, "Source": params.get("Source", "aws.scheduler"),
                "DetailType": params.get("DetailType", "Scheduled Event"), "Detail": payload or "{}",
            }])
            if result.get("FailedEntryCount"):
                raise RuntimeError(json.dumps(result["Entries"]))
        elif service == "sns":
            self.client("sns").publish(TopicArn=arn, Message=payload or "{}")
        else:
            raise ValueError(f"local firing does not support targets of service '{service}' ({arn})")

    def _send_to_dlq(self, dlq_arn: str, schedule: dict[str, Any], target_arn: str, error: str, body: str) -> None:
        sqs = self.client("sqs")
        parts = dlq_arn.split(":")
        url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        code, _, message = error.partition(": ")
        sqs.send_message(QueueUrl=url, MessageBody=body or "{}", MessageAttributes={
            "ERROR_CODE": {"DataType": "String", "StringValue": code or "Unknown"},
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": (message or error or "unknown")[:1000]},
            "RETRY_ATTEMPTS": {"DataType": "Number", "StringValue": str(MAX_LOCAL_ATTEMPTS - 1)},
            "EXECUTION_ID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
            "SCHEDULE_ARN": {"DataType": "String", "StringValue": schedule.get("Arn", "")},
            "TARGET_ARN": {"DataType": "String", "StringValue": target_arn},
        })

    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, sort_keys=True))
        tmp.replace(self.state_path)

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; errors are logged, never fatal."""
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception:
                LOG.exception("local schedule firing failed; retrying next tick")


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _substitute(text: str, schedule: dict[str, Any], when: datetime, attempt: int) -> str:
    values = {
        "<aws.scheduler.schedule-arn>": schedule.get("Arn", ""),
        "<aws.scheduler.scheduled-time>": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text
