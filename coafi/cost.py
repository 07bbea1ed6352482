"""Estimated AWS cost per 1,000 executions of a workflow definition (what ``coafi cost FILE`` prints).

The estimate follows the path a *successful* execution takes through the compiled state machine:

- **Step Functions** (Standard): one state transition per state entered: ``coafi.start``, ``coafi.run``, every
  step, the ``.started``/``.finished`` wrappers, ``parallel.<n>`` and its ``.join`` Pass states, Choice states,
  ``coafi.succeeded``. A Parallel counts once plus its branches. At a Choice the walk continues along the most
  expensive alternative, so a workflow with decisions gets an upper bound. Retries are not counted.
- **Lambda**: one request per ``lambda:invoke`` Task; billed duration per invocation from measured figures
  (``bench/results/*.json``) or :data:`DEFAULT_DURATION_MS`, at the functions' 256 MB; INIT duration (billed for
  managed runtimes since 2025-08-01) for the share of invocations that are cold starts.
- **DynamoDB** (on-demand): per state-function operation and per action, the write and read units counted by
  ``bench/state_writes.py`` (a TTL stamp written when the execution finishes counts with the operation that
  created the item), else the state store's pattern with items under 1 KB (:data:`DEFAULT_OPERATIONS`).
- **Engine API** (``trigger: ...`` lines): an execution started by an event trigger or a ``StartWorkflow`` command
  is started by the API function (``functions/api``, ``coafi.engine.commands``): one more Lambda invocation, its
  idempotent-start writes (:data:`TRIGGER_STARTS`), and the triggering event (a command: the command and its
  answer). The execution record and its history are the state function's ``start`` operation, counted above.
- **EventBridge**: the events actions were measured to put (the trigger's own on the ``trigger:`` lines).
  **Scheduler**: one invocation per execution started by a schedule (it starts the state machine directly).
- **SQS**: the task queue is not on the success path (its DLQ only receives failed deliveries): zero.
- **Sub-workflows** (``startExecution.sync:2``): the child's own execution is added, its definition found next to
  the parent's file.

Not included: CloudWatch Logs ingestion, X-Ray traces (sampled), storage, data transfer, free tiers.
This module also owns the format of the figure files the benchmarks write (:func:`save_figures`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coafi.compiler.asl import ArnRef

RESULTS_DIR = Path("bench") / "results"

# -- prices ---------------------------------------------------------------------------------------------------
# US East (N. Virginia), on demand, USD, free tiers ignored. Public list prices; the AWS pricing pages were not
# fetched from here: each figure was cross-checked on 2026-11-25 against published summaries of those pages
# (search results dated 2025-2026). Check https://aws.amazon.com/<service>/pricing/ before relying on them.
#
# Step Functions Standard: $0.025 per 1,000 state transitions (aws.amazon.com/step-functions/pricing).
STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1_000
# Lambda x86_64: $0.20 per 1M requests; $0.0000166667 per GB-second (first 6 billion GB-s a month)
# (aws.amazon.com/lambda/pricing). INIT phase billed like the handler since 2025-08-01 (AWS Compute Blog,
# "AWS Lambda standardizes billing for INIT Phase", 2025-04).
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_SECOND = 0.0000166667
# DynamoDB on-demand, after the 50% cut of 2024-11-01: $0.625 per million write request units, $0.125 per million
# read request units (aws.amazon.com/dynamodb/pricing/on-demand).
DYNAMODB_PER_WRU = 0.625 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000
# EventBridge: $1.00 per million custom events published to a bus (aws.amazon.com/eventbridge/pricing).
EVENTBRIDGE_PER_EVENT = 1.00 / 1_000_000
# EventBridge Scheduler: $1.00 per million invocations after 14 million free a month (same page).
SCHEDULER_PER_INVOCATION = 1.00 / 1_000_000
# SQS standard queue: $0.40 per million requests after 1 million free a month (aws.amazon.com/sqs/pricing).
# Assumption: not re-checked this time; unused on the success path anyway.
SQS_PER_REQUEST = 0.40 / 1_000_000

# -- what COAFI's functions do ---------------------------------------------------------------------------------
#: infra/constructs/function.py MEMORY_MB (not imported: that would load the CDK).
LAMBDA_MEMORY_MB = 256
#: Billed duration of one warm invocation when nothing was measured. Assumption: two to three DynamoDB round trips
#: of ~10 ms, pydantic parsing and two Powertools log lines at a 256 MB function's ~1/7 of a vCPU.
DEFAULT_DURATION_MS = 100.0
#: INIT duration of a cold start when bench/cold_start.py was not run. Assumption: Python runtime start plus the
#: imports of the handler, Powertools, pydantic and boto3 compiled from source (the layer ships no bytecode).
DEFAULT_INIT_MS = 800.0
#: Share of invocations that start a new execution environment. AWS's analysis when it began billing INIT:
#: "typically under 1% of invocations".
DEFAULT_COLD_START_RATE = 0.01
#: Items per BatchWriteItem request (the store writes SKIPPED step records in batches of 25).
BATCH_WRITE_SIZE = 25


@dataclass(frozen=True)
class OpFigures:
    """What one invocation of a function for one operation costs, besides the request itself."""

    duration_ms: float = DEFAULT_DURATION_MS
    requests: float = 0.0  # DynamoDB requests
    writes: float = 0.0  # items written
    wru: float = 0.0
    reads: float = 0.0
    rru: float = 0.0
    events: float = 0.0  # EventBridge events put
    source: str = "default"


#: The state store's DynamoDB work per operation when nothing was measured (coafi/state/store.py as of b67a56a):
#: one PutItem per step transition (a history event), and one more write per item when the execution finishes
#: (its TTL stamp, counted here with the write that created the item); start and finish write the record and an
#: event in one transaction (2 units per item) and update the record's three sparse indexes. Items under 1 KB.
DEFAULT_OPERATIONS: dict[str, OpFigures] = {
    "state:start": OpFigures(requests=1, writes=3, wru=8),  # record + event (x2), 3 index puts, event's stamp
    "state:finish": OpFigures(requests=3, writes=2, wru=9, reads=2, rru=2),  # read, query, record + event (x2),
    #                                                                          index changes; stamps: see above
    "state:step-RUNNING": OpFigures(requests=1, writes=2, wru=2),  # event + its stamp
    "state:step-SUCCEEDED": OpFigures(requests=1, writes=2, wru=2),
    "state:decide": OpFigures(requests=1, writes=2, wru=2),  # decision event + stamp; SKIPPED events apart
    # a callback/signal step starts waiting (docs/waits.md): STARTED event, wait record, signal channel, + stamps
    "state:wait": OpFigures(requests=4, writes=6, wru=6, reads=1, rru=1),
    # a schedule step (coafi/saga/ops.py schedule_step): its STARTED and SUCCEEDED events (+ stamps) and the task's
    # record (TaskStore.create). The task's own run later (queue or Scheduler, dispatcher, action) is not counted.
    "state:schedule": OpFigures(requests=3, writes=5, wru=5),
    # any other state function operation: one history event and its stamp
    "state": OpFigures(requests=1, writes=2, wru=2),
    "action": OpFigures(requests=2, writes=4, wru=4),  # STARTED and SUCCEEDED events + stamps; own calls unknown
    "external": OpFigures(),  # not COAFI's code: request and duration only
    # The engine API function starting one execution (coafi/engine/client.py WorkflowClient._start_once as of
    # f193024): PutItem of the start-key record conditional on its absence, StartExecution (Step Functions bills
    # its transitions only), UpdateItem of that record with the execution ARN; the record (~0.5 KB) is under 1 KB
    # and is not stamped when the execution ends (its own partition, TTL set when written). No event is put.
    "api:trigger-start": OpFigures(requests=2, writes=2, wru=2),
    # StartWorkflow (coafi/engine/commands.py run_start): the same, after the registry's live pointer and version
    # (two consistent GetItems of items under 4 KB: 1 RRU each), then the CommandSucceeded answer on the bus.
    "api:command-start": OpFigures(requests=4, writes=2, wru=2, reads=2, rru=2, events=1),
}
#: How an execution starts -> the engine API operation that starts it (``event``: an event trigger's rule targets
#: the API function; ``command``: a StartWorkflow command on the app's bus). Schedules and manual starts
#: (``coafi run``, ``WorkflowClient`` in the caller's process) do not invoke it.
TRIGGER_STARTS = {"event": "api:trigger-start", "command": "api:command-start"}
#: Write units of one SKIPPED step event (put in batches of 25, then stamped when the execution finishes).
SKIPPED_EVENT_WRU = 2


# -- the path of a successful execution ---------------------------------------------------------------------
@dataclass
class Usage:
    """What one execution uses, summed over the states it enters."""

    transitions: int = 0
    invocations: Counter[str] = field(default_factory=Counter)  # "state:start", "action:<name>", "external:<arn>"
    skipped_records: int = 0
    skipped_batches: int = 0
    waits: int = 0
    children: Counter[str] = field(default_factory=Counter)  # sub-workflow id -> executions started

    def add(self, other: Usage, times: int = 1) -> None:
        self.transitions += other.transitions * times
        self.skipped_records += other.skipped_records * times
        self.skipped_batches += other.skipped_batches * times
        self.waits += other.waits * times
        for key, count in other.invocations.items():
            self.invocations[key] += count * times
        for key, count in other.children.items():
            self.children[key] += count * times


def invocation_key(function: str, payload: Any, substitutions: Mapping[str, ArnRef]) -> str:
    """``state:<op>`` for the state function, ``action:<name>``, or ``external:<ARN>``."""
    name = function[2:-1] if function.startswith("${") and function.endswith("}") else None
    ref = substitutions.get(name) if name else None
    if ref is not None and ref.kind == "state-function":
        op = str(payload.get("op", "?")) if isinstance(payload, dict) else "?"
        return f"state:step-{payload.get('status', '?')}" if op == "step" else f"state:{op}"
    if ref is not None and ref.kind == "action":
        return f"action:{ref.name}"
    return f"external:{function}"


def task_usage(state: Mapping[str, Any], substitutions: Mapping[str, ArnRef]) -> Usage:
    usage = Usage()
    resource = str(state.get("Resource", ""))
    parameters = state.get("Parameters") or {}
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        payload = parameters.get("Payload") or {}
        key = invocation_key(str(parameters.get("FunctionName", "")), payload, substitutions)
        usage.invocations[key] += 1
        skipped = payload.get("skipped") if key == "state:decide" else None
        if skipped:
            usage.skipped_records += len(skipped)
            usage.skipped_batches += math.ceil(len(skipped) / BATCH_WRITE_SIZE)
    elif resource.startswith("arn:aws:states:::states:startExecution"):
        machine = str(parameters.get("StateMachineArn", ""))
        ref = substitutions.get(machine[2:-1]) if machine.startswith("${") else None
        usage.children[ref.name if ref is not None else machine] += 1
    elif resource.startswith("arn:aws:lambda:"):
        usage.invocations[f"external:{resource}"] += 1
    return usage


class PathWalker:
    """Walks a state machine from its start to its end, as a successful execution does."""

    def __init__(self, substitutions: Mapping[str, ArnRef], weigh: Callable[[Usage], float]) -> None:
        self.substitutions = substitutions
        self.weigh = weigh
        self._choices: dict[tuple[int, str], Usage] = {}

    def walk(self, machine: Mapping[str, Any]) -> Usage:
        return self.chain(machine["States"], str(machine["StartAt"]))

    def chain(self, states: Mapping[str, Any], start: str) -> Usage:
        usage = Usage()
        current: str | None = start
        while current is not None:
            state = states[current]
            kind = state["Type"]
            usage.transitions += 1
            if kind == "Choice":
                usage.add(self._choice(states, current, state))
                break
            if kind == "Parallel":
                for branch in state.get("Branches", []):
                    usage.add(self.walk(branch))
            elif kind == "Map":
                processor = state.get("ItemProcessor") or state.get("Iterator")
                if processor:
                    usage.add(self.walk(processor))  # one item: the item count is only known at run time
            elif kind == "Task":
                usage.add(task_usage(state, self.substitutions))
            elif kind == "Wait":
                usage.waits += 1
            current = None if state.get("End") or kind in ("Succeed", "Fail") else state.get("Next")
        return usage

    def _choice(self, states: Mapping[str, Any], name: str, state: Mapping[str, Any]) -> Usage:
        key = (id(states), name)
        if key not in self._choices:
            targets = [str(c["Next"]) for c in state.get("Choices", [])]
            if "Default" in state:
                targets.append(str(state["Default"]))
            options = [self.chain(states, target) for target in targets]
            self._choices[key] = max(options, key=self.weigh) if options else Usage()
        return self._choices[key]


# -- figures measured by the benchmarks -------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """The machine figures were measured on."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False, timeout=10)
        info["node"] = node.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["node"] = None
    return info


def revision(root: Path) -> dict[str, Any]:
    """The commit the figures were measured on, and the files that differed from it."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout if done.returncode == 0 else ""

    # Not stripped: the first entry's status may start with a space (" M path"), and its two columns come first.
    status = git("status", "--porcelain=v1", "-z", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short=12", "HEAD").strip() or None, "modified": porcelain_paths(status)}


def porcelain_paths(status: str) -> list[str]:
    """The paths of ``git status --porcelain=v1 -z`` output: ``XY <path>`` entries split by NUL; a rename or
    copy (``R``/``C``) is followed by a second entry with the path it came from, which is not a changed file."""
    paths: list[str] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if "R" in entry[:2] or "C" in entry[:2]:
            next(entries, None)
    return paths


def save_figures(root: Path, name: str, figures: Mapping[str, Any]) -> Path:
    """Write ``<root>/bench/results/<name>.json`` with the machine, the revision and the time of measurement."""
    folder = root / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    document = {"benchmark": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(), "revision": revision(root), **figures}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def load_figures(folder: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` figure file of ``folder`` by benchmark name; unreadable files are skipped."""
    found: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            found[path.stem] = document
    return found


@dataclass
class Figures:
    """Per-operation figures: measured where a benchmark measured them, defaults elsewhere."""

    operations: dict[str, OpFigures] = field(default_factory=dict)
    init_ms: dict[str, float] = field(default_factory=dict)  # function folder name ("state", action) -> INIT ms
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_results(cls, results: Mapping[str, Mapping[str, Any]]) -> Figures:
        figures = cls()
        counted = results.get("state_writes", {})
        source = f"bench/results/state_writes.json ({counted.get('measured_at')})"
        for key, values in (counted.get("per_key") or {}).items():
            figures.operations[key] = _op_figures(values, source)
        if counted:
            figures.sources.append("DynamoDB units and durations: bench/results/state_writes.json (counted in process "
                                   "on moto; durations at full CPU)")
        local = results.get("local_e2e", {})
        for key, values in (local.get("per_key") or {}).items():
            base = figures.operations.get(key) or figures.default(key)
            figures.operations[key] = replace(base, duration_ms=float(values["duration_ms"]),
                                              source="bench/results/local_e2e.json")
        if local.get("per_key"):
            figures.sources.append("durations: bench/results/local_e2e.json (LocalStack, handler processes)")
        cold = results.get("cold_start", {})
        for name, values in (cold.get("functions") or {}).items():
            if "init_ms" in values:
                figures.init_ms[name] = float(values["init_ms"])
        if figures.init_ms:
            figures.sources.append("INIT durations: bench/results/cold_start.json")
        return figures

    def default(self, key: str) -> OpFigures:
        if key in DEFAULT_OPERATIONS:
            return DEFAULT_OPERATIONS[key]
        return DEFAULT_OPERATIONS[key.split(":", 1)[0]] if ":" in key else OpFigures()

    def of(self, key: str) -> OpFigures:
        return self.operations.get(key) or self.default(key)

    def init_of(self, key: str) -> float:
        kind, _, name = key.partition(":")
        folder = kind if kind in ("state", "api") else name
        return self.init_ms.get(folder, DEFAULT_INIT_MS)


def _op_figures(values: Mapping[str, Any], source: str) -> OpFigures:
    return OpFigures(
        duration_ms=float(values.get("duration_ms", DEFAULT_DURATION_MS)),
        requests=float(values.get("requests", 0)), writes=float(values.get("writes", 0)),
        wru=float(values.get("wru", 0)), reads=float(values.get("reads", 0)), rru=float(values.get("rru", 0)),
        events=float(values.get("events", 0)), source=source,
    )


# -- the estimate -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    component: str
    quantity: float  # per ``executions`` executions
    unit: str
    unit_price: float
    price_text: str

    @property
    def cost(self) -> float:
        return self.quantity * self.unit_price


@dataclass
class Estimate:
    workflow: str
    version: str
    executions: int
    trigger: str
    usage: Usage
    lines: list[Line]
    notes: list[str]

    @property
    def trigger_invocations(self) -> dict[str, int]:
        """The engine API invocations that start each execution (none unless an event trigger or a command)."""
        start = TRIGGER_STARTS.get(self.trigger)
        return {start: 1} if start else {}

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "version": self.version,
            "executions": self.executions,
            "trigger": self.trigger,
            "region": "us-east-1",
            "currency": "USD",
            "per_execution": {
                "state_transitions": self.usage.transitions,
                "lambda_invocations": dict(sorted(self.usage.invocations.items())),
                "trigger_invocations": self.trigger_invocations,
                "child_executions": dict(sorted(self.usage.children.items())),
                "skipped_step_records": self.usage.skipped_records,
            },
            "components": [
                {"component": line.component, "quantity": line.quantity, "unit": line.unit,
                 "unit_price_usd": line.unit_price, "cost_usd": line.cost}
                for line in self.lines
            ],
            "total_usd": self.total,
            "notes": self.notes,
        }


@dataclass
class Options:
    executions: int = 1_000
    trigger: str = "auto"  # auto | event | command | schedule | manual
    cold_start_rate: float = DEFAULT_COLD_START_RATE
    duration_ms: float | None = None  # overrides every invocation's billed duration


class Estimator:
    """Cost of workflows by id; sub-workflows are looked up among ``definitions``."""

    def __init__(self, definitions: Mapping[str, Any], figures: Figures, options: Options) -> None:
        self.definitions = definitions
        self.figures = figures
        self.options = options
        self._usage: dict[str, Usage] = {}
        self._visiting: list[str] = []

    # usage, children included ------------------------------------------------------------------------------
    def usage(self, workflow_id: str) -> Usage:
        """One execution of ``workflow_id`` with the executions of its sub-workflows folded in."""
        if workflow_id in self._usage:
            return self._usage[workflow_id]
        if workflow_id in self._visiting:
            cycle = " -> ".join([*self._visiting, workflow_id])
            raise ValueError(f"sub-workflows start each other in a cycle: {cycle}")
        definition = self.definitions.get(workflow_id)
        if definition is None:
            raise KeyError(workflow_id)
        from coafi.compiler import compile_workflow

        self._visiting.append(workflow_id)
        try:
            compiled = compile_workflow(definition)
            own = PathWalker(compiled.substitutions, self._weigh).walk(compiled.asl)
            self._usage[workflow_id] = self._fold_children(own)
        finally:
            self._visiting.pop()
        return self._usage[workflow_id]

    def _fold_children(self, own: Usage) -> Usage:
        total = Usage()
        total.add(own)
        for child, count in own.children.items():
            if child in self.definitions:
                child_usage = self.usage(child)
                total.add(replace(child_usage, children=Counter()), count)
                for grandchild, n in child_usage.children.items():
                    total.children[grandchild] += n * count
        return total

    def _weigh(self, usage: Usage) -> float:
        return sum(line.cost for line in self.lines(self._fold_children(usage), trigger="manual"))

    # lines ---------------------------------------------------------------------------------------------------
    def lines(self, usage: Usage, trigger: str) -> list[Line]:
        n = self.options.executions
        work = self._work(usage.invocations)
        wru = work.wru + usage.skipped_records * SKIPPED_EVENT_WRU
        lines = [
            Line("Step Functions state transitions", usage.transitions * n, "transitions",
                 STEP_FUNCTIONS_PER_TRANSITION, "$0.025 / 1K"),
            *self._lambda_lines("", work),
            Line("DynamoDB writes (on-demand)", wru * n, "WRU", DYNAMODB_PER_WRU, "$0.625 / 1M"),
            Line("DynamoDB reads (on-demand)", work.rru * n, "RRU", DYNAMODB_PER_RRU, "$0.125 / 1M"),
            Line("EventBridge custom events", work.events * n, "events", EVENTBRIDGE_PER_EVENT, "$1.00 / 1M"),
            Line("EventBridge Scheduler invocations", (1 if trigger == "schedule" else 0) * n, "invocations",
                 SCHEDULER_PER_INVOCATION, "$1.00 / 1M"),
            Line("SQS requests", 0.0, "requests", SQS_PER_REQUEST, "$0.40 / 1M"),
        ]
        start = TRIGGER_STARTS.get(trigger)
        if start is not None:  # the engine API function starts each execution: its own lines
            api = self._work({start: 1})
            lines += [
                *self._lambda_lines("trigger: API ", api),
                Line("trigger: DynamoDB writes (on-demand)", api.wru * n, "WRU", DYNAMODB_PER_WRU, "$0.625 / 1M"),
                Line("trigger: DynamoDB reads (on-demand)", api.rru * n, "RRU", DYNAMODB_PER_RRU, "$0.125 / 1M"),
                Line("trigger: EventBridge custom events", (1 + api.events) * n, "events", EVENTBRIDGE_PER_EVENT,
                     "$1.00 / 1M"),  # the triggering event or command, and what the API puts (an answer)
            ]
        return lines

    def _work(self, invocations: Mapping[str, int]) -> _Work:
        """What ``invocations`` (key -> count, per execution) use, from the figures."""
        lambda_gb = LAMBDA_MEMORY_MB / 1024
        work = _Work(requests=sum(invocations.values()))
        for key, count in invocations.items():
            op = self.figures.of(key)
            billed_ms = self.options.duration_ms if self.options.duration_ms is not None else op.duration_ms
            work.gb_seconds += count * math.ceil(billed_ms) / 1000 * lambda_gb
            work.init_gb_seconds += count * self.options.cold_start_rate * self.figures.init_of(key) / 1000 * lambda_gb
            work.wru += count * op.wru
            work.rru += count * op.rru
            work.events += count * op.events
        return work

    def _lambda_lines(self, prefix: str, work: _Work) -> list[Line]:
        n = self.options.executions
        return [
            Line(f"{prefix}Lambda requests", work.requests * n, "requests", LAMBDA_PER_REQUEST, "$0.20 / 1M"),
            Line(f"{prefix}Lambda duration (256 MB)", work.gb_seconds * n, "GB-s", LAMBDA_PER_GB_SECOND,
                 "$0.0000166667 / GB-s"),
            Line(f"{prefix}Lambda INIT ({self.options.cold_start_rate:.0%} cold starts)", work.init_gb_seconds * n,
                 "GB-s", LAMBDA_PER_GB_SECOND, "$0.0000166667 / GB-s"),
        ]

    def estimate(self, workflow_id: str) -> Estimate:
        definition = self.definitions[workflow_id]
        usage = self.usage(workflow_id)
        trigger = resolve_trigger(definition, self.options.trigger)
        return Estimate(workflow_id, str(definition.version), self.options.executions, trigger, usage,
                        self.lines(usage, trigger), self._notes(usage, trigger))

    def _notes(self, usage: Usage, trigger: str) -> list[str]:
        notes = [STARTED_BY.get(trigger, f"started by: {trigger} trigger")]
        missing = sorted(child for child in usage.children if child not in self.definitions)
        if missing:
            notes.append(f"sub-workflows not found next to the file, not included: {', '.join(missing)}")
        keys = [*usage.invocations, *([TRIGGER_STARTS[trigger]] if trigger in TRIGGER_STARTS else [])]
        measured = sorted({self.figures.of(k).source for k in keys} - {"default"})
        defaulted = sorted(k for k in keys if self.figures.of(k).source == "default")
        if self.options.duration_ms is not None:
            notes.append(f"every invocation billed {self.options.duration_ms:g} ms (--duration-ms)")
        if measured:
            notes.append("measured figures: " + "; ".join(self.figures.sources))
        if defaulted:
            notes.append(f"defaults ({DEFAULT_DURATION_MS:g} ms, the store's writes at 1 KB per item) for: "
                         + ", ".join(defaulted))
        if "state:schedule" in usage.invocations:
            notes.append("schedule steps: the scheduled task's own run (queue message or schedule, dispatcher, action) "
                         "is not included")
        if any(k.startswith("action:") and self.figures.of(k).source == "default" for k in usage.invocations):
            notes.append("actions' own AWS calls are only included where bench/state_writes.py counted them")
        notes.append("a decision takes its most expensive branch; retries, failures, CloudWatch Logs, X-Ray, "
                     "storage and free tiers are not included")
        return notes


@dataclass
class _Work:
    """Lambda and DynamoDB use of some invocations, per execution."""

    requests: float = 0.0
    gb_seconds: float = 0.0
    init_gb_seconds: float = 0.0
    wru: float = 0.0
    rru: float = 0.0
    events: float = 0.0


#: The first note of an estimate: how its executions start, and which lines that adds.
STARTED_BY = {
    "event": "started by: event trigger: the engine API function starts each execution (the 'trigger:' lines: its "
             "invocation, its idempotent-start writes, the triggering event)",
    "command": "started by: StartWorkflow command: the engine API function starts each execution (the 'trigger:' "
               "lines: its invocation, registry reads and start writes, the command and its answer event)",
}


def resolve_trigger(definition: Any, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    kinds = [str(getattr(t, "type", "")) for t in getattr(definition, "triggers", [])]
    for kind in ("event", "schedule"):
        if kind in kinds:
            return kind
    return "manual"


def estimate_file(path: Path, options: Options | None = None, results_dir: Path | None = None) -> Estimate:
    """Load ``path`` (and the definitions next to it, for sub-workflows) and estimate its cost."""
    from coafi.definitions import find_project_root, load_definition
    from coafi.definitions.loader import definition_files

    definition = load_definition(path)
    definitions: dict[str, Any] = {}
    for other in definition_files([path.parent]):
        if other.resolve() == path.resolve():
            continue
        try:
            sibling = load_definition(other)
        except Exception:  # a broken neighbour does not stop the estimate; it is only needed as a child
            continue
        definitions.setdefault(sibling.id, sibling)
    definitions[definition.id] = definition
    if results_dir is None:
        root = find_project_root(path.resolve().parent) or Path.cwd()
        results_dir = root / RESULTS_DIR
    figures = Figures.from_results(load_figures(results_dir))
    return Estimator(definitions, figures, options or Options()).estimate(definition.id)
