"""Load on the embedded LocalStack: many executions of the sample workflow, and every one accounted for.

    .venv/bin/python bench/local_load.py [--executions 200] [--at-once 50] [--in-flight 10] [--keep] [--no-save]

Starts (or reuses) the embedded LocalStack (``coafi.local.harness.up``, port ``COAFI_LOCAL_PORT`` or 4566),
deploys the app there, runs one ``content-generation`` execution to warm up, then:

1. **at once**: ``--at-once`` executions started in the same instant (threads behind a barrier): how many succeed.
   Before the local executor queued invocations (``COAFI_LAMBDA_MAX_STARTS``), 46 of 50 timed out here;
2. **load**: ``--executions`` executions, ``--in-flight`` running at a time (a client with bounded concurrency:
   the next starts when one ends, so the local cloud's queues stay short enough for the steps' timeouts); then
   prints executions per minute (first start to last stop) and checks that every one is accounted for
   (:func:`account`):

   * Step Functions: every execution SUCCEEDED;
   * state: the state table has each one's execution record, SUCCEEDED, with its six steps SUCCEEDED, and the
     ``byWorkflowStatus`` index lists every one;
   * history: each one's COAFI history has WORKFLOW_STARTED and WORKFLOW_SUCCEEDED, and its Step Functions history
     ends with ExecutionSucceeded;
   * metrics: the functions' ``AWS/Lambda Invocations`` (published by LocalStack) grew by exactly the number of
     Lambda tasks the executions' histories scheduled; and, when the app publishes its own workflow metrics
     (``WorkflowSucceeded`` with a ``workflow`` dimension, EMF), they count every execution too.

Writes ``bench/results/local_load.json``. Exit status 1 if any execution is not accounted for.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make ``bench.local_e2e`` importable
    sys.path.insert(0, str(REPO_ROOT))

from bench.local_e2e import TERMINAL, WORKFLOW, request  # noqa: E402

__all__ = ["WORKFLOW", "account", "measure", "metrics_before", "run_window", "workflow_functions"]

STEPS = ("validateParameters", "checkPermissions", "generateContent", "storeContent", "updateRegistry",
         "notifySubscribers")
WORKFLOW_METRIC = "WorkflowSucceeded"
METRICS_WAIT_S = 60.0


# -- starting and waiting ------------------------------------------------------------------------------------
def start_one(machine_arn: str, tag: str, i: int) -> str:
    from coafi import aws

    arn: str = aws.client("stepfunctions").start_execution(
        stateMachineArn=machine_arn, name=f"load-{tag}-{i}", input=json.dumps(request(f"load-{tag}-{i}")))[
        "executionArn"]
    return arn


def start_at_once(machine_arn: str, count: int) -> list[str]:
    """``count`` executions whose StartExecution calls all wait at one barrier first."""
    barrier = threading.Barrier(count)
    tag = uuid.uuid4().hex[:8]

    def one(i: int) -> str:
        barrier.wait()
        return start_one(machine_arn, tag, i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def run_window(machine_arn: str, count: int, in_flight: int, poll_s: float = 0.5) -> dict[str, dict[str, Any]]:
    """``count`` executions, at most ``in_flight`` running at a time (the next starts when one ends)."""
    from coafi import aws

    sfn = aws.client("stepfunctions")
    tag = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    indexes = iter(range(count))
    done: dict[str, dict[str, Any]] = {}

    def worker() -> None:
        while True:
            with lock:
                i = next(indexes, None)
            if i is None:
                return
            arn = start_one(machine_arn, tag, i)
            while (described := sfn.describe_execution(executionArn=arn))["status"] not in TERMINAL:
                time.sleep(poll_s)
            with lock:
                done[arn] = described

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        for future in [pool.submit(worker) for _ in range(in_flight)]:
            future.result()
    return done


def wait_all(arns: Iterable[str], timeout: float = 1800.0, poll_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """Describe every execution until all have ended; returns arn -> DescribeExecution."""
    from coafi import aws

    sfn = aws.client("stepfunctions")
    pending = list(arns)
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        still: list[str] = []
        for arn in pending:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] in TERMINAL:
                done[arn] = described
            else:
                still.append(arn)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} executions still running after {timeout:.0f} s: {pending[:3]}")
            time.sleep(poll_s)
    return done


def per_minute(described: Iterable[dict[str, Any]]) -> float:
    runs = list(described)
    span = (max(d["stopDate"] for d in runs) - min(d["startDate"] for d in runs)).total_seconds()
    return len(runs) / span * 60 if span > 0 else float("inf")


# -- accounting ------------------------------------------------------------------------------------------------
@dataclass
class Accounting:
    executions: int
    succeeded: int = 0
    state_records: int = 0
    indexed: int = 0
    coafi_histories: int = 0
    sfn_histories: int = 0
    lambda_tasks: dict[str, int] = field(default_factory=dict)  # function name -> tasks scheduled
    lambda_invocations: dict[str, float] = field(default_factory=dict)  # function name -> metric growth
    workflow_metric: float | None = None  # the app's own WorkflowSucceeded growth, when it publishes one
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def function_name(resource_arn: str) -> str:
    return resource_arn.split(":function:", 1)[-1].split(":", 1)[0]


def lambda_tasks(history: list[dict[str, Any]]) -> Counter[str]:
    """Lambda invocations a Step Functions history scheduled (every attempt), by function name."""
    scheduled: Counter[str] = Counter()
    for event in history:
        details = event.get("taskScheduledEventDetails")
        if details and details.get("resourceType") == "lambda":
            parameters = json.loads(details.get("parameters") or "{}")
            scheduled[function_name(str(parameters.get("FunctionName", "")))] += 1
        lambda_details = event.get("lambdaFunctionScheduledEventDetails")
        if lambda_details:
            scheduled[function_name(str(lambda_details.get("resource", "")))] += 1
    return scheduled


def metric_sum(namespace: str, name: str, dimensions: list[dict[str, str]], since: datetime) -> float:
    from coafi import aws

    end = datetime.now(UTC) + timedelta(minutes=5)
    datapoints = aws.client("cloudwatch").get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=dimensions, StartTime=since, EndTime=end,
        Period=86400, Statistics=["Sum"])["Datapoints"]
    return float(sum(d["Sum"] for d in datapoints))


def lambda_invocations(functions: Iterable[str], since: datetime) -> dict[str, float]:
    return {f: metric_sum("AWS/Lambda", "Invocations", [{"Name": "FunctionName", "Value": f}], since)
            for f in functions}


def workflow_metric_series(workflow_id: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(namespace, dimensions) of every ``WorkflowSucceeded`` series of this workflow the app publishes (EMF).

    Empty while the app publishes no workflow metrics: then the metric check does not apply."""
    from coafi import aws

    found: list[tuple[str, list[dict[str, str]]]] = []
    for page in aws.client("cloudwatch").get_paginator("list_metrics").paginate(MetricName=WORKFLOW_METRIC):
        for metric in page["Metrics"]:
            dims = [{"Name": d["Name"], "Value": d["Value"]} for d in metric.get("Dimensions", [])]
            if any(d["Name"].lower() == "workflow" and d["Value"] == workflow_id for d in dims):
                found.append((metric["Namespace"], dims))
    return found


@dataclass
class MetricsBefore:
    since: datetime
    invocations: dict[str, float]
    workflow: dict[tuple[str, str], float]


def metrics_before(functions: Iterable[str], workflow_id: str) -> MetricsBefore:
    since = datetime.now(UTC) - timedelta(hours=12)
    return MetricsBefore(
        since, lambda_invocations(functions, since),
        {(ns, json.dumps(dims)): metric_sum(ns, WORKFLOW_METRIC, dims, since)
         for ns, dims in workflow_metric_series(workflow_id)},
    )


def account(table: str, workflow_id: str, described: dict[str, dict[str, Any]], before: MetricsBefore,
            *, metrics_wait_s: float = METRICS_WAIT_S, exact_metrics: bool = True) -> Accounting:
    """Check that Step Functions, the state table, both histories and the metrics account for every execution.

    ``before`` was read before the executions started. With ``exact_metrics`` nothing else may run the workflow's
    functions meanwhile (the metrics must grow by exactly what these executions did); without, by at least that.
    """
    from coafi import aws
    from coafi.state import StateStore

    sfn = aws.client("stepfunctions")
    store = StateStore(table)
    acc = Accounting(executions=len(described))
    tasks: Counter[str] = Counter()
    earliest = min(d["startDate"] for d in described.values())
    for arn, d in described.items():
        if d["status"] == "SUCCEEDED":
            acc.succeeded += 1
        else:
            acc.problem(f"{arn}: {d['status']} {d.get('error', '')} {str(d.get('cause', ''))[:200]}")
        record = store.get_execution(arn)
        steps = {s.stepId: s.status for s in store.list_steps(arn)}
        if record is not None and record.status == "SUCCEEDED" and steps == dict.fromkeys(STEPS, "SUCCEEDED"):
            acc.state_records += 1
        else:
            acc.problem(f"{arn}: state record {record.status if record else 'missing'}, steps {steps}")
        types = [e.type for e in store.get_execution_history(arn)]
        if types[:1] == ["WORKFLOW_STARTED"] and types[-1:] == ["WORKFLOW_SUCCEEDED"]:
            acc.coafi_histories += 1
        else:
            acc.problem(f"{arn}: COAFI history {types[:2]}...{types[-2:]}")
        history: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            history.extend(page["events"])
        if history and history[-1]["type"] == "ExecutionSucceeded":
            acc.sfn_histories += 1
        else:
            acc.problem(f"{arn}: Step Functions history ends with {history[-1]['type'] if history else 'nothing'}")
        tasks.update(lambda_tasks(history))
    acc.indexed = len(indexed(store, workflow_id, earliest) & set(described))
    if acc.indexed != len(described):
        acc.problem(f"the byWorkflowStatus index lists {acc.indexed} of {len(described)} as SUCCEEDED")
    acc.lambda_tasks = dict(tasks)
    check_metrics(acc, workflow_id, before, metrics_wait_s, exact_metrics)
    return acc


def indexed(store: Any, workflow_id: str, since: datetime) -> set[str]:
    found: set[str] = set()
    token: str | None = None
    while True:
        page = store.find_executions(workflow_id=workflow_id, status="SUCCEEDED",
                                     start_after=since - timedelta(seconds=5), limit=1000, next_token=token)
        found.update(e.executionId for e in page.executions)
        token = page.next_token
        if not token:
            return found


def check_metrics(acc: Accounting, workflow_id: str, before: MetricsBefore, wait_s: float,
                  exact: bool = True) -> None:
    """Metrics are published asynchronously: poll (up to ``wait_s``) until they add up, then report."""
    deadline = time.monotonic() + wait_s

    def adds_up(grown: float, expected: int) -> bool:
        return grown == expected if exact else grown >= expected

    while True:
        now = lambda_invocations(acc.lambda_tasks, before.since)
        acc.lambda_invocations = {f: now[f] - before.invocations.get(f, 0.0) for f in acc.lambda_tasks}
        workflow = {key: metric_sum(key[0], WORKFLOW_METRIC, json.loads(key[1]), before.since) - before.workflow.get(
            key, 0.0) for key in _series_keys(workflow_id)}
        acc.workflow_metric = max(workflow.values()) if workflow else None
        lambda_ok = all(adds_up(acc.lambda_invocations[f], n) for f, n in acc.lambda_tasks.items())
        workflow_ok = acc.workflow_metric is None or acc.workflow_metric >= acc.executions
        if (lambda_ok and workflow_ok) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    for f, n in acc.lambda_tasks.items():
        if not adds_up(acc.lambda_invocations[f], n):
            acc.problem(f"AWS/Lambda Invocations of {f} grew by {acc.lambda_invocations[f]:.0f}, "
                        f"the histories scheduled {n}")
    if acc.workflow_metric is not None and acc.workflow_metric < acc.executions:
        acc.problem(f"{WORKFLOW_METRIC} of {workflow_id} grew by {acc.workflow_metric:.0f}, "
                    f"not {acc.executions}")


def _series_keys(workflow_id: str) -> list[tuple[str, str]]:
    return [(ns, json.dumps(dims)) for ns, dims in workflow_metric_series(workflow_id)]


# -- the benchmark ---------------------------------------------------------------------------------------------
def workflow_functions(machine_arn: str) -> list[str]:
    """Names of the Lambda functions a state machine's Task states invoke."""
    from coafi import aws

    definition = json.loads(aws.client("stepfunctions").describe_state_machine(
        stateMachineArn=machine_arn)["definition"])
    names: set[str] = set()

    def visit(states: dict[str, Any]) -> None:
        for state in states.values():
            target = (state.get("Parameters") or {}).get("FunctionName")
            if isinstance(target, str) and ":function:" in target:
                names.add(function_name(target))
            for branch in state.get("Branches", []):
                visit(branch["States"])

    visit(definition["States"])
    return sorted(names)


def measure(outputs: Any, executions: int, at_once: int, in_flight: int,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    machine = outputs.workflow_arn(WORKFLOW)
    run_window(machine, 1, 1)  # warm-up: the first environment of every function
    figures: dict[str, Any] = {"executions": executions, "at_once": at_once, "in_flight": in_flight}
    if at_once:
        progress(f"{at_once} executions started in the same instant...")
        burst = wait_all(start_at_once(machine, at_once))
        figures["at_once_succeeded"] = sum(1 for d in burst.values() if d["status"] == "SUCCEEDED")
        figures["at_once_per_min"] = per_minute(burst.values())
    before = metrics_before(workflow_functions(machine), WORKFLOW)
    progress(f"{executions} executions, at most {in_flight} at a time...")
    began = time.monotonic()
    described = run_window(machine, executions, in_flight)
    figures["per_min"] = per_minute(described.values())
    figures["wall_s"] = time.monotonic() - began
    progress("accounting for every execution (Step Functions, state table, histories, metrics)...")
    acc = account(outputs.state_table_name, WORKFLOW, described, before)
    figures["accounting"] = {
        "succeeded": acc.succeeded, "state_records": acc.state_records, "indexed": acc.indexed,
        "coafi_histories": acc.coafi_histories, "sfn_histories": acc.sfn_histories,
        "lambda_tasks": sum(acc.lambda_tasks.values()),
        "lambda_invocations_metric": sum(acc.lambda_invocations.values()),
        "workflow_metric": acc.workflow_metric, "problems": acc.problems,
    }
    return figures


def report(figures: dict[str, Any]) -> str:
    a = figures["accounting"]
    n = figures["executions"]
    lines = []
    if figures.get("at_once"):
        lines.append(f"{figures['at_once']} started in the same instant: {figures['at_once_succeeded']} of "
                     f"{figures['at_once']} succeeded ({figures['at_once_per_min']:.0f} executions/min)")
    lines += [
        f"{n} executions, at most {figures['in_flight']} at a time, all ended after {figures['wall_s']:.1f} s: "
        f"{figures['per_min']:.1f} executions/min (first start to last stop)",
        f"  Step Functions SUCCEEDED      {a['succeeded']:>5} / {n}",
        f"  state records + 6 steps       {a['state_records']:>5} / {n}",
        f"  listed by byWorkflowStatus    {a['indexed']:>5} / {n}",
        f"  COAFI history start..end      {a['coafi_histories']:>5} / {n}",
        f"  Step Functions history        {a['sfn_histories']:>5} / {n}",
        f"  AWS/Lambda Invocations        {a['lambda_invocations_metric']:>5.0f} / {a['lambda_tasks']} Lambda "
        "tasks scheduled",
        "  " + (f"{WORKFLOW_METRIC} (app metric)    {a['workflow_metric']:>5.0f} / {n}"
                if a["workflow_metric"] is not None else
                f"{WORKFLOW_METRIC} (app metric)    not published by this app version: not checked"),
    ]
    lines += [f"  PROBLEM: {p}" for p in a["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=200, help="executions of the load run")
    parser.add_argument("--at-once", type=int, default=50, help="executions started in the same instant (0: skip)")
    parser.add_argument("--in-flight", type=int, default=10,
                        help="executions running at a time in the load run (the next starts when one ends)")
    parser.add_argument("--keep", action="store_true", help="leave the local cloud running")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/local_load.json")
    args = parser.parse_args(argv)
    from coafi.cost import save_figures
    from coafi.deploy import deploy
    from coafi.local import harness

    info = harness.up(project_root=REPO_ROOT)
    try:
        outputs = deploy(local=True, project_root=REPO_ROOT)
        figures = measure(outputs, max(1, args.executions), max(0, args.at_once), max(1, args.in_flight))
    finally:
        if info.started and not args.keep:
            harness.down(project_root=REPO_ROOT)
    print(report(figures))
    if not args.no_save:
        path = save_figures(REPO_ROOT, "local_load", figures)
        print(f"\nfigures written to {path.relative_to(REPO_ROOT)}")
    return 1 if figures["accounting"]["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
