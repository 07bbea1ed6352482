"""DynamoDB requests and write units per step of the sample workflow: counted, not estimated.

    .venv/bin/python bench/state_writes.py [--executions N] [--workflow content-generation]

Runs the workflow with ``coafi.testing.InProcessCloud`` (moto's Step Functions interpreter, the project's real
handlers) and counts every DynamoDB call the Lambda handlers make, through botocore event hooks on the shared
clients of ``coafi.aws``: ``provide-client-params`` (what is asked) and ``after-call`` (what came back). Calls the
harness makes to read results back are not counted.

Write units are computed, because moto reports a constant ``ConsumedCapacity``: each written item is read back
before and after the call (sizes by DynamoDB's rules: attribute names + values) and charged as on-demand
DynamoDB bills it: one write unit per started KB of the larger image, twice that inside ``TransactWriteItems``,
plus the global secondary indexes the write changed (from ``DescribeTable``: an entry put or deleted is one write
of its projected size, a changed index key a delete and a put). Reads: one unit per started 4 KB strongly
consistent, half for eventually consistent ones.

Writes are split by the item they land on (``PK = EXEC#...``): the execution record (``SK = EXECUTION``),
step records and step history events (``STEP#``, ``HIST#`` naming a step), workflow history events, checkpoints
(``CKPT#``); anything else is the application's own (e.g. ``CONTENT#``, written by the sample's actions). Work a
handler hands to a thread pool is counted as the handler's. The goal of the issue is at most two writes per step
transition (a step's status change: RUNNING, then SUCCEEDED or FAILED, per attempt); ratios are measured / 2.

Also written to ``bench/results/state_writes.json`` (per Lambda function and operation: invocations, median
duration in process, DynamoDB requests and units, events put), which ``coafi cost`` reads. There, a TTL stamp the
finishing execution writes on an item counts as a (deferred) write of the operation that created the item, so the
figures of an operation do not depend on the size of the workflow it ran in.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coafi.cost import save_figures

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = "content-generation"
REQUEST: dict[str, Any] = {
    "contentType": "article",
    "parameters": {"topic": "durable workflows", "lengthWords": 200},
    "metadata": {"userId": "ada", "role": "editor", "requestId": "bench-1"},
}
GOAL_WRITES_PER_STEP = 2.0
TTL_ATTRIBUTE = "expiresAt"  # coafi.state.schema.TTL_ATTRIBUTE
READ_OPS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


# -- DynamoDB item sizes and capacity units ------------------------------------------------------------
def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: about one per two significant digits, plus one."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").split("e")[0].split("E")[0].rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's wire format (``{"S": ...}``, ``{"M": {...}}``, ...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return number_size(str(inner))
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(before: int, after: int) -> int:
    """On-demand write request units of one item write: 1 per started KB of the larger image, at least 1."""
    return max(1, math.ceil(max(before, after) / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


# -- what one invocation did ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemWrite:
    record: str  # execution | workflow | step | checkpoint | other (COAFI's EXEC# items) | app (anything else)
    units: int  # table write units
    index_units: int  # write units of the global secondary indexes the write changed
    stamp: bool = False  # an update of the TTL attribute alone, on an item another invocation created


@dataclass
class Call:
    operation: str
    writes: list[ItemWrite] = field(default_factory=list)
    read_units: float = 0.0


@dataclass
class Invocation:
    key: str  # "state:start", "state:step-RUNNING", "action:<name>"
    duration_ms: float = 0.0
    calls: list[Call] = field(default_factory=list)
    events: int = 0
    #: TTL stamps other invocations later wrote on items this one created: its writes, deferred.
    deferred: list[ItemWrite] = field(default_factory=list)

    def own_writes(self) -> list[ItemWrite]:
        return [w for c in self.calls for w in c.writes if not w.stamp]

    @property
    def writes(self) -> int:
        """Items it wrote plus the TTL stamps deferred to it (stamps it made for others are theirs)."""
        return len(self.own_writes()) + len(self.deferred)

    @property
    def wru(self) -> int:
        return sum(w.units + w.index_units for w in [*self.own_writes(), *self.deferred])

    @property
    def reads(self) -> int:
        return sum(1 for c in self.calls if c.operation in READ_OPS)

    @property
    def rru(self) -> float:
        return sum(c.read_units for c in self.calls)


def operation_key(function: str, event: Any) -> str:
    if function != "coafi-state":
        return f"action:{function}"
    op = str(event.get("op", "?")) if isinstance(event, dict) else "?"
    if op == "step":
        return f"state:step-{event.get('status', '?')}"
    return f"state:{op}"


def ttl_stamp(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Only the TTL attribute changed."""
    if before is None or after is None:
        return False
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return changed == {TTL_ATTRIBUTE}


def record_kind(key: dict[str, Any], image: dict[str, Any] | None) -> str:
    """Which record a write lands on; a history event is a step's if it names one, else the workflow's."""
    pk = str(key.get("PK", {}).get("S", ""))
    sk = str(key.get("SK", {}).get("S", ""))
    if not pk.startswith("EXEC#"):
        return "app"
    if sk == "EXECUTION":
        return "execution"
    if sk.startswith("STEP#") or (sk.startswith("HIST#") and "stepId" in (image or {})):
        return "step"
    if sk.startswith("HIST#"):
        return "workflow"
    return "checkpoint" if sk.startswith("CKPT#") else "other"


@dataclass(frozen=True)
class Table:
    """Key attributes and global secondary indexes of a table, from ``DescribeTable``."""

    keys: tuple[str, ...]
    indexes: tuple[tuple[tuple[str, ...], tuple[str, ...] | None], ...]  # (index keys, projected or None = ALL)

    @classmethod
    def describe(cls, client: Any, name: str) -> Table:
        table = client.describe_table(TableName=name)["Table"]
        indexes = []
        for index in table.get("GlobalSecondaryIndexes", []):
            projection = index.get("Projection", {})
            projected = None if projection.get("ProjectionType") == "ALL" else tuple(
                projection.get("NonKeyAttributes", []))
            indexes.append((tuple(k["AttributeName"] for k in index["KeySchema"]), projected))
        return cls(tuple(k["AttributeName"] for k in table["KeySchema"]), tuple(indexes))

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys}

    def index_units(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        """Write units the indexes consume: an index entry put or deleted is one write of its projected size, a
        changed index key a delete plus a put, a changed projected attribute one write; unchanged: none."""
        units = 0
        for index_keys, projected in self.indexes:
            old, new = self._entry(before, index_keys, projected), self._entry(after, index_keys, projected)
            if old == new:
                continue
            if old is not None and new is not None and any(old[k] != new[k] for k in index_keys):
                units += write_units(item_size(old), 0) + write_units(0, item_size(new))
            else:
                units += write_units(item_size(old), item_size(new))
        return units

    def _entry(self, item: dict[str, Any] | None, index_keys: tuple[str, ...],
               projected: tuple[str, ...] | None) -> dict[str, Any] | None:
        if not item or any(k not in item for k in index_keys):
            return None
        if projected is None:
            return item
        names = {*self.keys, *index_keys, *projected}
        return {k: v for k, v in item.items() if k in names}


class CallCounter:
    """Attributes every DynamoDB call of the hooked clients to the Lambda invocation running on its thread."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader  # an unhooked client: reads item images without being counted
        self.local = threading.local()
        self.invocations: list[Invocation] = []
        self.lock = threading.Lock()
        self.tables: dict[str, Table] = {}
        self.creators: dict[str, Invocation] = {}  # item -> the invocation that created it
        self.active = False  # an execution is running: calls outside any invocation are still counted
        self.unattributed = Invocation("unattributed")

    # handlers
    def wrap(self, function: str, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def counted(event: Any, context: Any) -> Any:
            invocation = Invocation(operation_key(function, event))
            self.local.current = invocation
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                invocation.duration_ms = (time.perf_counter() - started) * 1000
                self.local.current = None
                with self.lock:
                    self.invocations.append(invocation)

        return counted

    def current(self) -> Invocation | None:
        invocation: Invocation | None = getattr(self.local, "current", None)
        if invocation is None and self.active:
            return self.unattributed  # a thread the handler started without going through a pool
        return invocation

    @contextmanager
    def follow_pools(self) -> Iterator[None]:
        """Work a handler hands to a ``ThreadPoolExecutor`` is counted as the handler's."""
        original = ThreadPoolExecutor.submit
        local = self.local

        def submit(pool: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            invocation = getattr(local, "current", None)
            if invocation is None:
                return original(pool, fn, *args, **kwargs)

            def run(*a: Any, **k: Any) -> Any:
                local.current = invocation
                try:
                    return fn(*a, **k)
                finally:
                    local.current = None

            return original(pool, run, *args, **kwargs)

        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            ThreadPoolExecutor.submit = original  # type: ignore[method-assign]

    # botocore hooks
    def before_dynamodb(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.current() is None:
            return
        targets = self._targets(model.name, params)
        context["coafi_bench"] = {"params": dict(params), "targets": targets,
                                  "before": [self._get(table, key) for table, key, _ in targets]}

    def after_dynamodb(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        invocation, asked = self.current(), context.get("coafi_bench")
        if invocation is None or asked is None:
            return
        invocation.calls.append(self._call(invocation, model.name, asked, parsed))

    def on_events_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        invocation = self.current()
        if invocation is not None and model.name == "PutEvents":
            invocation.events += len(params.get("Entries", []))

    # items
    def table(self, name: str) -> Table:
        if name not in self.tables:
            self.tables[name] = Table.describe(self.reader, name)
        return self.tables[name]

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item

    def _targets(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
        """(table, key, unit multiplier) of every item a write request touches: 2 inside a transaction."""
        def key(table: str, request: dict[str, Any]) -> dict[str, Any]:
            return request["Key"] if "Key" in request else self.table(table).key_of(request["Item"])

        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(params["TableName"], key(params["TableName"], params), 1)]
        if operation == "BatchWriteItem":
            return [(table, key(table, next(iter(request.values()))), 1)
                    for table, requests in params["RequestItems"].items() for request in requests]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((_, request),) = entry.items()  # Put | Update | Delete | ConditionCheck
                found.append((request["TableName"], key(request["TableName"], request), 2))
            return found
        return []

    def _call(self, invocation: Invocation, operation: str, asked: dict[str, Any], parsed: dict[str, Any]) -> Call:
        params, call = asked["params"], Call(operation)
        for (table, key, times), before in zip(asked["targets"], asked["before"], strict=True):
            after = self._get(table, key)
            units = times * write_units(item_size(before), item_size(after))
            write = ItemWrite(record_kind(key, after or before), units, self.table(table).index_units(before, after))
            name = f"{table}/{sorted(key.items())}"
            creator = self.creators.get(name)
            if before is None:
                self.creators[name] = invocation
            elif creator is not None and creator is not invocation and ttl_stamp(before, after):
                write = replace(write, stamp=True)
                creator.deferred.append(write)
            call.writes.append(write)
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            item = self._get(params["TableName"], params["Key"])
            call.read_units = read_units(item_size(item), consistent)
        elif operation == "Query":
            call.read_units = read_units(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
        return call


# -- running ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    steps: int
    step_transitions: int  # status changes of steps: RUNNING and its end per attempt, SKIPPED once
    transitions: int  # Step Functions states entered
    invocations: list[Invocation]


def step_transitions(steps: list[Any]) -> int:
    return sum(1 if s.status == "SKIPPED" else 2 * max(1, s.attempts) for s in steps)


@contextmanager
def counted_cloud() -> Iterator[tuple[Any, CallCounter]]:
    import boto3

    from coafi import aws
    from coafi.testing import InProcessCloud

    previous = os.environ.get("POWERTOOLS_LOG_LEVEL")
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the handlers' step logs would drown the figures
    try:
        with InProcessCloud(REPO_ROOT) as cloud:
            counter = CallCounter(boto3.client("dynamodb", region_name="us-east-1"))
            dynamodb, events = aws.client("dynamodb"), aws.client("events")  # the instances the handlers use
            dynamodb.meta.events.register("provide-client-params.dynamodb.*", counter.before_dynamodb)
            dynamodb.meta.events.register("after-call.dynamodb.*", counter.after_dynamodb)
            events.meta.events.register("provide-client-params.events.*", counter.on_events_call)
            for name, handler in list(cloud.handlers.items()):
                cloud.handlers[name] = counter.wrap(name, handler)
            with counter.follow_pools():
                yield cloud, counter
    finally:
        if previous is None:
            os.environ.pop("POWERTOOLS_LOG_LEVEL", None)
        else:
            os.environ["POWERTOOLS_LOG_LEVEL"] = previous


def run_once(cloud: Any, counter: CallCounter, workflow: str, request: dict[str, Any]) -> Run:
    from coafi import aws

    counter.invocations, counter.unattributed, counter.creators = [], Invocation("unattributed"), {}
    sfn = aws.client("stepfunctions")
    counter.active = True
    try:
        arn = cloud.start(workflow, request)
        deadline = time.monotonic() + 60
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arn} still running after 60 s")
            time.sleep(0.02)
    finally:
        counter.active = False  # before the harness reads anything back
    invocations = list(counter.invocations)
    if counter.unattributed.calls:
        invocations.append(counter.unattributed)
    result = cloud.wait(arn)
    if result.status != "SUCCEEDED":
        raise RuntimeError(f"{workflow} ended {result.status}: {result.error}: {result.cause}")
    return Run(len(result.steps), step_transitions(result.steps), len(result.entered_states()), invocations)


# -- figures ---------------------------------------------------------------------------------------------
def per_key(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Per operation key: invocations per execution, median duration, and per-invocation DynamoDB figures."""
    grouped: dict[str, list[Invocation]] = {}
    for run in runs:
        for invocation in run.invocations:
            grouped.setdefault(invocation.key, []).append(invocation)
    figures: dict[str, dict[str, float]] = {}
    for key, group in sorted(grouped.items()):
        n = len(group)
        figures[key] = {
            "invocations_per_execution": n / len(runs),
            "duration_ms": statistics.median(i.duration_ms for i in group),
            "writes": sum(i.writes for i in group) / n,
            "wru": sum(i.wru for i in group) / n,
            "reads": sum(i.reads for i in group) / n,
            "rru": sum(i.rru for i in group) / n,
            "events": sum(i.events for i in group) / n,
            "requests": sum(len(i.calls) for i in group) / n,
        }
    return figures


RECORDS = ("execution", "workflow", "step", "checkpoint", "other", "app")
LABELS = {"execution": "execution record", "workflow": "workflow history events", "step": "step records/events",
          "checkpoint": "checkpoints", "other": "other COAFI items", "app": "application items (actions)"}


def totals(run: Run) -> dict[str, Any]:
    calls = [c for i in run.invocations for c in i.calls]
    by_record: dict[str, dict[str, float]] = {}
    for write in (w for c in calls for w in c.writes):
        entry = by_record.setdefault(write.record, {"writes": 0, "wru": 0, "index_wru": 0})
        entry["writes"] += 1
        entry["wru"] += write.units
        entry["index_wru"] += write.index_units
    return {
        "steps": run.steps,
        "step_transitions": run.step_transitions,
        "transitions": run.transitions,
        "lambda_invocations": len(run.invocations),
        "requests": len(calls),
        "requests_by_operation": dict(sorted(Counter(c.operation for c in calls).items())),
        "writes_by_record": by_record,
        "reads": sum(1 for c in calls if c.operation in READ_OPS),
        "rru": sum(c.read_units for c in calls),
        "events": sum(i.events for i in run.invocations),
    }


def summary(total: dict[str, Any]) -> dict[str, float]:
    records = total["writes_by_record"]
    empty = {"writes": 0, "wru": 0, "index_wru": 0}
    coafi = [records.get(r, empty) for r in RECORDS if r != "app"]
    step = records.get("step", empty)
    coafi_writes = sum(r["writes"] for r in coafi)
    coafi_wru = sum(r["wru"] + r["index_wru"] for r in coafi)
    steps, step_transitions = max(1, total["steps"]), max(1, total["step_transitions"])
    return {
        "step_writes_per_step_transition": step["writes"] / step_transitions,
        "coafi_writes_per_step_transition": coafi_writes / step_transitions,
        "step_writes_per_step": step["writes"] / steps,
        "step_wru_per_step": (step["wru"] + step["index_wru"]) / steps,
        "coafi_writes_per_step": coafi_writes / steps,
        "coafi_wru_per_step": coafi_wru / steps,
        "coafi_writes_per_state_transition": coafi_writes / max(1, total["transitions"]),
        "requests_per_execution": total["requests"],
    }


def report(workflow: str, runs: list[Run], total: dict[str, Any], keys: dict[str, dict[str, float]]) -> str:
    s = summary(total)
    records = total["writes_by_record"]
    lines = [
        f"State writes: {workflow} on InProcessCloud (moto, real handlers), {len(runs)} execution(s), every "
        "DynamoDB call counted",
        f"per execution: {total['steps']} steps ({total['step_transitions']} step transitions: RUNNING and "
        f"SUCCEEDED each), {total['transitions']} state transitions (states entered), "
        f"{total['lambda_invocations']} Lambda invocations, {total['requests']} DynamoDB requests "
        f"({', '.join(f'{k} {v}' for k, v in total['requests_by_operation'].items())})",
        "",
        f"{'items written':<30} {'writes':>7} {'WRU':>6} {'index WRU':>9}",
    ]
    for record in RECORDS:
        entry = records.get(record)
        if entry is not None or record in ("execution", "step"):
            entry = entry or {"writes": 0, "wru": 0, "index_wru": 0}
            lines.append(f"{LABELS[record]:<30} {entry['writes']:>7.0f} {entry['wru']:>6.0f} "
                         f"{entry['index_wru']:>9.0f}")
    goal = GOAL_WRITES_PER_STEP
    lines += [
        f"{'reads':<30} {total['reads']:>7} {total['rru']:>6.1f} RRU",
        "",
        f"step writes per step transition:   {s['step_writes_per_step_transition']:.2f}  goal <= {goal:.0f}: "
        f"{s['step_writes_per_step_transition'] / goal:.2f}x of the goal",
        f"COAFI writes per step transition:  {s['coafi_writes_per_step_transition']:.2f}  "
        f"{s['coafi_writes_per_step_transition'] / goal:.2f}x (execution record and workflow events included)",
        f"step writes per step:              {s['step_writes_per_step']:.2f} ({s['step_wru_per_step']:.2f} WRU)",
        f"COAFI writes per step:             {s['coafi_writes_per_step']:.2f} ({s['coafi_wru_per_step']:.2f} WRU)",
        f"COAFI writes per state transition: {s['coafi_writes_per_state_transition']:.2f}",
        "",
        f"{'function:operation':<36} {'per exec':>8} {'median ms':>9} {'requests':>8} {'writes':>6} {'WRU':>5} "
        f"{'reads':>5} {'RRU':>5} {'events':>6}",
    ]
    for key, f in keys.items():
        lines.append(
            f"{key:<36} {f['invocations_per_execution']:>8.1f} {f['duration_ms']:>9.1f} {f['requests']:>8.1f} "
            f"{f['writes']:>6.1f} {f['wru']:>5.1f} {f['reads']:>5.1f} {f['rru']:>5.1f} {f['events']:>6.1f}"
        )
    lines.append("(per invocation; WRU include index writes and transactions' double units; durations are in "
                 "process on moto at full CPU, not a 256 MB Lambda's share)")
    return "\n".join(lines)


def check_consistent(runs: list[Run]) -> None:
    counts = {(len(r.invocations), sum(len(i.calls) for i in r.invocations)) for r in runs}
    if len(counts) > 1:
        print(f"warning: executions differ in invocations/requests: {sorted(counts)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=5, help="executions to run (figures are per execution)")
    parser.add_argument("--workflow", default=WORKFLOW, help="workflow id in statemachines/")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/state_writes.json")
    args = parser.parse_args(argv)
    with counted_cloud() as (cloud, counter):
        runs = [run_once(cloud, counter, args.workflow, REQUEST) for _ in range(max(1, args.executions))]
    check_consistent(runs)
    total = totals(runs[-1])
    keys = per_key(runs)
    print(report(args.workflow, runs, total, keys))
    if not args.no_save:
        path = save_figures(REPO_ROOT, "state_writes", {
            "workflow": args.workflow, "executions": len(runs), "per_execution": total,
            "summary": summary(total), "per_key": keys,
        })
        print(f"\nfigures written to {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
