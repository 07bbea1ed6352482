"""DynamoDB requests and write units per step of the sample workflow: counted, not estimated.

    .venv/bin/python bench/state_writes.py [--executions N] [--workflow content-generation]

Runs the workflow with ``coafi.testing.InProcessCloud`` (moto's Step Functions interpreter, the project's real
handlers) and counts every DynamoDB call the Lambda handlers make, through botocore event hooks on the shared
clients of ``coafi.aws``: ``provide-client-params`` (what is asked) and ``after-call`` (what came back). Calls the
harness makes to read results back are not counted.

Write units are computed, because moto reports a constant ``ConsumedCapacity``: for each written item its size
before and after the call is read back (DynamoDB's item-size rules: attribute names + values), and
one write request unit is charged per started KB of the larger image, as on-demand DynamoDB bills it. Reads: one
read unit per started 4 KB (strongly consistent), half for eventually consistent ones.

Writes are split by the record they land on: the execution record (``SK = EXECUTION``), step records
(``SK = STEP#...``) and the application's own items (e.g. ``CONTENT#``, written by the sample's actions).
The goal of the issue is at most two COAFI writes per step; the ratio printed is measured / 2.

Also written to ``bench/results/state_writes.json`` (per Lambda function and operation: invocations, median
duration in process, DynamoDB requests and units, events put), which ``coafi cost`` reads.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
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
WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
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
@dataclass
class Call:
    operation: str
    record: str  # execution | step | app | read
    items: int = 0
    write_units: int = 0
    read_units: float = 0.0


@dataclass
class Invocation:
    key: str  # "state:start", "state:step-RUNNING", "action:<name>"
    duration_ms: float = 0.0
    calls: list[Call] = field(default_factory=list)
    events: int = 0

    @property
    def writes(self) -> int:
        return sum(c.items for c in self.calls if c.operation in WRITE_OPS)

    @property
    def wru(self) -> int:
        return sum(c.write_units for c in self.calls)

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


def record_kind(key: dict[str, Any]) -> str:
    sk = str(key.get("SK", {}).get("S", ""))
    if sk == "EXECUTION":
        return "execution"
    return "step" if sk.startswith("STEP#") else "app"


class CallCounter:
    """Attributes every DynamoDB call of the hooked clients to the Lambda invocation running on its thread."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader  # an unhooked client: reads item images without being counted
        self.local = threading.local()
        self.invocations: list[Invocation] = []
        self.lock = threading.Lock()

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
        return getattr(self.local, "current", None)

    # botocore hooks
    def before_dynamodb(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.current() is None:
            return
        context["coafi_bench"] = {"params": dict(params), "before": self._images_before(model.name, params)}

    def after_dynamodb(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        invocation, asked = self.current(), context.get("coafi_bench")
        if invocation is None or asked is None:
            return
        invocation.calls.append(self._call(model.name, asked["params"], asked["before"], parsed))

    def on_events_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        invocation = self.current()
        if invocation is not None and model.name == "PutEvents":
            invocation.events += len(params.get("Entries", []))

    # sizes
    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item

    def _written_keys(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or {k: params["Item"][k] for k in ("PK", "SK")}
            return [(params["TableName"], key)]
        if operation == "BatchWriteItem":
            keys: list[tuple[str, dict[str, Any]]] = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    put = request.get("PutRequest", {}).get("Item")
                    keys.append((table, {k: put[k] for k in ("PK", "SK")} if put else request["DeleteRequest"]["Key"]))
            return keys
        return []

    def _images_before(self, operation: str, params: dict[str, Any]) -> list[int]:
        return [item_size(self._get(table, key)) for table, key in self._written_keys(operation, params)]

    def _call(self, operation: str, params: dict[str, Any], before: list[int], parsed: dict[str, Any]) -> Call:
        keys = self._written_keys(operation, params)
        if keys:
            after = [item_size(self._get(table, key)) for table, key in keys]
            units = sum(write_units(b, a) for b, a in zip(before, after, strict=True))
            return Call(operation, record_kind(keys[0][1]), items=len(keys), write_units=units)
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            item = self._get(params["TableName"], params["Key"])
            return Call(operation, "read", read_units=read_units(item_size(item), consistent))
        if operation == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            return Call(operation, "read", read_units=read_units(size, consistent))
        return Call(operation, "read")


# -- running ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    steps: int
    transitions: int
    invocations: list[Invocation]


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
            yield cloud, counter
    finally:
        if previous is None:
            os.environ.pop("POWERTOOLS_LOG_LEVEL", None)
        else:
            os.environ["POWERTOOLS_LOG_LEVEL"] = previous


def run_once(cloud: Any, counter: CallCounter, workflow: str, request: dict[str, Any]) -> Run:
    from coafi import aws

    counter.invocations = []
    arn = cloud.start(workflow, request)
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + 60
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arn} still running after 60 s")
        time.sleep(0.02)
    invocations = list(counter.invocations)  # before the harness reads anything back
    result = cloud.wait(arn)
    if result.status != "SUCCEEDED":
        raise RuntimeError(f"{workflow} ended {result.status}: {result.error}: {result.cause}")
    return Run(len(result.steps), len(result.entered_states()), invocations)


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


def totals(run: Run) -> dict[str, Any]:
    calls = [c for i in run.invocations for c in i.calls]
    by_record: dict[str, dict[str, float]] = {}
    for call in calls:
        if call.operation in WRITE_OPS:
            entry = by_record.setdefault(call.record, {"writes": 0, "wru": 0})
            entry["writes"] += call.items
            entry["wru"] += call.write_units
    return {
        "steps": run.steps,
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
    step = records.get("step", {"writes": 0, "wru": 0})
    execution = records.get("execution", {"writes": 0, "wru": 0})
    coafi_writes = step["writes"] + execution["writes"]
    steps = max(1, total["steps"])
    return {
        "step_record_writes_per_step": step["writes"] / steps,
        "step_record_wru_per_step": step["wru"] / steps,
        "coafi_writes_per_step": coafi_writes / steps,
        "coafi_wru_per_step": (step["wru"] + execution["wru"]) / steps,
        "coafi_writes_per_transition": coafi_writes / max(1, total["transitions"]),
        "requests_per_execution": total["requests"],
    }


def report(workflow: str, runs: list[Run], total: dict[str, Any], keys: dict[str, dict[str, float]]) -> str:
    s = summary(total)
    records = total["writes_by_record"]
    lines = [
        f"State writes: {workflow} on InProcessCloud (moto, real handlers), {len(runs)} execution(s), every "
        "DynamoDB call counted",
        f"per execution: {total['steps']} steps, {total['transitions']} state transitions (states entered), "
        f"{total['lambda_invocations']} Lambda invocations, {total['requests']} DynamoDB requests "
        f"({', '.join(f'{k} {v}' for k, v in total['requests_by_operation'].items())})",
        "",
        f"{'record':<22} {'writes':>7} {'WRU':>6}",
    ]
    for record in ("execution", "step", "app"):
        entry = records.get(record, {"writes": 0, "wru": 0})
        lines.append(f"{record + ' record(s)':<22} {entry['writes']:>7.0f} {entry['wru']:>6.0f}")
    lines += [
        f"{'reads':<22} {total['reads']:>7} {total['rru']:>6.1f} RRU",
        "",
        f"step-record writes per step:             {s['step_record_writes_per_step']:.2f} "
        f"({s['step_record_wru_per_step']:.2f} WRU)  goal <= {GOAL_WRITES_PER_STEP:.0f}: "
        f"{s['step_record_writes_per_step'] / GOAL_WRITES_PER_STEP:.2f}x of the goal",
        f"COAFI writes per step (+ execution rec.): {s['coafi_writes_per_step']:.2f} "
        f"({s['coafi_wru_per_step']:.2f} WRU)  {s['coafi_writes_per_step'] / GOAL_WRITES_PER_STEP:.2f}x of the goal",
        f"COAFI writes per state transition:        {s['coafi_writes_per_transition']:.2f}",
        "",
        f"{'function:operation':<36} {'per exec':>8} {'median ms':>9} {'writes':>6} {'WRU':>5} {'reads':>5} "
        f"{'RRU':>5} {'events':>6}",
    ]
    for key, f in keys.items():
        lines.append(
            f"{key:<36} {f['invocations_per_execution']:>8.1f} {f['duration_ms']:>9.1f} {f['writes']:>6.1f} "
            f"{f['wru']:>5.1f} {f['reads']:>5.1f} {f['rru']:>5.1f} {f['events']:>6.1f}"
        )
    lines.append("(per invocation; durations are in process on moto at full CPU, not Lambda's 256 MB share)")
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
