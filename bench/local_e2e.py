"""Local end to end: the sample workflow on the embedded LocalStack, per step, per workflow, and 50 at once.

    .venv/bin/python bench/local_e2e.py [--runs N] [--concurrent 50] [--keep]

Its latest figures are in BENCHMARKS.md. It starts (or reuses) the embedded LocalStack on port 4566, or
``COAFI_LOCAL_PORT`` (``coafi.local.harness.up``), deploys the app there (``coafi.deploy.deploy(local=True)``),
then:

1. **baseline**: a one-state ``Pass`` machine created next to the app, run ``--runs`` times: the floor of a
   Step Functions execution on this LocalStack, measured in the same command;
2. **per workflow**: ``content-generation`` started ``--runs`` times one after the other
   (``StartExecution``, input as the demo's event detail); wall time from the execution's own ``startDate`` to
   ``stopDate``, and its ratio to the baseline;
3. **per step**: from each execution's history, the time from a Task state entered to exited (Lambda invoke
   included), and the handler's own ``durationMs`` from the step records in DynamoDB;
4. **throughput**: ``--concurrent`` executions started at once (threads), executions per minute from the first
   start to the last stop; the same for as many baseline executions, and the ratio.

Writes ``bench/results/local_e2e.json``; its ``per_key`` durations (per state-function operation and action, the
Task state's time) replace the in-process ones in ``coafi cost``. Stops the local cloud afterwards if it started
it, unless ``--keep``. Set ``AWS_ENDPOINT_URL`` to use another LocalStack instead of the embedded one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = "content-generation"
BASELINE_MACHINE = "coafi-bench-baseline"
BASELINE_ASL = {"StartAt": "Nothing", "States": {"Nothing": {"Type": "Pass", "End": True}}}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def request(marker: str) -> dict[str, Any]:
    return {
        "contentType": "article",
        "parameters": {"topic": "serverless workflow orchestration", "lengthWords": 120},
        "metadata": {"requestId": marker, "userId": "bench", "role": "editor", "priority": 1},
    }


# -- executions -------------------------------------------------------------------------------------------
@dataclass
class Execution:
    arn: str
    status: str
    started: datetime
    stopped: datetime
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.stopped - self.started).total_seconds()


def start(machine_arn: str, payload: Any) -> str:
    from coafi import aws

    arn: str = aws.client("stepfunctions").start_execution(
        stateMachineArn=machine_arn, name=f"bench-{uuid.uuid4()}", input=json.dumps(payload))["executionArn"]
    return arn


def finish(arn: str, timeout: float = 300.0, history: bool = True) -> Execution:
    from coafi import aws

    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arn} still {described['status']} after {timeout:.0f} s")
        time.sleep(0.1)
    events: list[dict[str, Any]] = []
    if history:
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            events.extend(page["events"])
    return Execution(arn, described["status"], described["startDate"], described["stopDate"], events)


def run_sequential(machine_arn: str, runs: int, payload: Any) -> list[Execution]:
    return [finish(start(machine_arn, payload)) for _ in range(runs)]


def run_concurrent(machine_arn: str, count: int, payload: Any) -> tuple[list[Execution], float]:
    """``count`` executions started at once; returns them and executions per minute (first start to last stop)."""
    with ThreadPoolExecutor(max_workers=min(count, 50)) as pool:
        arns = list(pool.map(lambda _: start(machine_arn, payload), range(count)))
        done = list(pool.map(lambda arn: finish(arn, timeout=600.0, history=False), arns))
    span = (max(e.stopped for e in done) - min(e.started for e in done)).total_seconds()
    return done, count / span * 60 if span > 0 else float("inf")


# -- per state / per step ----------------------------------------------------------------------------------
def state_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Task states' time from entered to exited, from an execution's history."""
    entered: dict[str, datetime] = {}
    spent: dict[str, float] = {}
    for event in history:
        if "stateEnteredEventDetails" in event:
            entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                spent[name] = (event["timestamp"] - entered[name]).total_seconds()
    return spent


def state_keys(workflow_id: str) -> dict[str, str]:
    """Task state name -> ``coafi cost`` operation key (``state:start``, ``action:<name>``...)."""
    from coafi.compiler import compile_workflow
    from coafi.cost import invocation_key
    from coafi.definitions import load_definition

    compiled = compile_workflow(load_definition(REPO_ROOT / "statemachines" / f"{workflow_id}.yaml"))
    keys: dict[str, str] = {}

    def visit(states: dict[str, Any]) -> None:
        for name, state in states.items():
            parameters = state.get("Parameters") or {}
            if str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke"):
                keys[name] = invocation_key(str(parameters.get("FunctionName", "")), parameters.get("Payload"),
                                            compiled.substitutions)
            for branch in state.get("Branches", []):
                visit(branch["States"])

    visit(compiled.asl["States"])
    return keys


def handler_ms(table: str, executions: list[Execution]) -> dict[str, list[float]]:
    from coafi.state import StateStore

    store = StateStore(table)
    found: dict[str, list[float]] = {}
    for execution in executions:
        for record in store.list_steps(execution.arn):
            if record.durationMs is not None:
                found.setdefault(record.stepId, []).append(float(record.durationMs))
    return found


# -- report -----------------------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"Local end to end on {figures['endpoint']} ({figures['runs']} sequential runs, "
        f"{figures['concurrent']} concurrent)",
        f"baseline (1 Pass state): {figures['baseline_s'] * 1000:.0f} ms per execution",
        f"{WORKFLOW}: {figures['workflow_s'] * 1000:.0f} ms per execution "
        f"({figures['workflow_s'] / figures['baseline_s']:.1f}x the baseline), "
        f"{figures['steps']} steps: {figures['workflow_s'] / figures['steps'] * 1000:.0f} ms per step",
        "",
        f"{'state':<28} {'entered->exited ms':>18} {'handler ms':>10}",
    ]
    for name, seconds in figures["states_s"].items():
        handler = figures["handler_ms"].get(name)
        lines.append(f"{name:<28} {seconds * 1000:>18.0f} {'' if handler is None else f'{handler:.0f}':>10}")
    lines += [
        "",
        f"{figures['concurrent']} at once: {figures['workflow_per_min']:.0f} executions/min "
        f"(baseline {figures['baseline_per_min']:.0f}/min: "
        f"{figures['workflow_per_min'] / figures['baseline_per_min']:.2f}x); "
        f"{figures['concurrent_failed']} did not succeed",
    ]
    return "\n".join(lines)


def measure(outputs: Any, endpoint: str, runs: int, concurrent: int) -> dict[str, Any]:
    from coafi import aws

    sfn = aws.client("stepfunctions")
    baseline_arn = sfn.create_state_machine(
        name=f"{BASELINE_MACHINE}-{uuid.uuid4().hex[:8]}", definition=json.dumps(BASELINE_ASL),
        roleArn="arn:aws:iam::000000000000:role/coafi-bench")["stateMachineArn"]
    try:
        workflow_arn = outputs.workflow_arn(WORKFLOW)
        run_sequential(workflow_arn, 1, request("warm-up"))  # first invocations start the handler processes
        baseline = run_sequential(baseline_arn, runs, {})
        executions = run_sequential(workflow_arn, runs, request("sequential"))
        if any(e.status != "SUCCEEDED" for e in executions):
            raise RuntimeError(f"{WORKFLOW} did not succeed: {[e.status for e in executions]}")
        _, baseline_per_min = run_concurrent(baseline_arn, concurrent, {})
        parallel, workflow_per_min = run_concurrent(workflow_arn, concurrent, request("concurrent"))
    finally:
        sfn.delete_state_machine(stateMachineArn=baseline_arn)
    per_state: dict[str, list[float]] = {}
    for execution in executions:
        for name, seconds in state_seconds(execution.history).items():
            per_state.setdefault(name, []).append(seconds)
    keys = state_keys(WORKFLOW)
    handlers = handler_ms(outputs.state_table_name, executions)
    return {
        "endpoint": endpoint, "runs": runs, "concurrent": concurrent,
        "baseline_s": median([e.seconds for e in baseline]),
        "workflow_s": median([e.seconds for e in executions]),
        "steps": len(handlers),
        "states_s": {name: median(values) for name, values in per_state.items() if name in keys},
        "handler_ms": {name: median(values) for name, values in handlers.items()},
        "workflow_per_min": workflow_per_min, "baseline_per_min": baseline_per_min,
        "concurrent_failed": sum(1 for e in parallel if e.status != "SUCCEEDED"),
        "per_key": {keys[name]: {"duration_ms": median(values) * 1000}
                    for name, values in per_state.items() if name in keys},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="sequential executions (medians are reported)")
    parser.add_argument("--concurrent", type=int, default=50, help="executions started at once")
    parser.add_argument("--keep", action="store_true", help="leave the local cloud running")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/local_e2e.json")
    args = parser.parse_args(argv)
    from coafi.cost import save_figures
    from coafi.deploy import deploy
    from coafi.local import harness

    info = harness.up(project_root=REPO_ROOT)
    try:
        outputs = deploy(local=True, project_root=REPO_ROOT)
        figures = measure(outputs, info.endpoint, max(1, args.runs), max(1, args.concurrent))
    finally:
        if info.started and not args.keep:
            harness.down(project_root=REPO_ROOT)
    print(report(figures))
    if not args.no_save:
        path = save_figures(REPO_ROOT, "local_e2e", figures)
        print(f"\nfigures written to {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
