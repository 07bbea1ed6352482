"""``coafi cost``: the path a successful execution takes, the figures it prices, and the command."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from coafi import cost, cost_cli
from coafi.compiler.asl import ArnRef
from coafi.cost import Estimator, Figures, Options, PathWalker, Usage, estimate_file

SUBSTITUTIONS = {
    "StateFunctionArn": ArnRef(kind="state-function"),
    "Action_a": ArnRef(kind="action", name="a"),
    "Workflow_child": ArnRef(kind="workflow", name="child"),
}


def invoke(function: str, payload: dict[str, Any] | None = None, **state: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function, "Payload": payload or {}}, **state}


def walk(machine: dict[str, Any], weigh: Any = lambda u: u.transitions) -> Usage:
    return PathWalker(SUBSTITUTIONS, weigh).walk(machine)


def estimate(file: Path, tmp_path: Path, **options: Any) -> cost.Estimate:
    """An estimate with no measured figures (an empty results folder): defaults only, deterministic."""
    return estimate_file(file, Options(**options), results_dir=tmp_path / "no-results")


# -- the path ------------------------------------------------------------------------------------------------
def test_a_sequence_counts_every_state_entered_and_each_invocation() -> None:
    machine = {"StartAt": "s", "States": {
        "s": invoke("${StateFunctionArn}", {"op": "start"}, Next="a"),
        "a": invoke("${Action_a}", Next="w"),
        "w": {"Type": "Wait", "Seconds": 5, "Next": "p"},
        "p": {"Type": "Pass", "Next": "f"},
        "f": invoke("${StateFunctionArn}", {"op": "finish"}, End=True),
        "unreached": {"Type": "Fail"},
    }}
    usage = walk(machine)
    assert usage.transitions == 5
    assert usage.invocations == {"state:start": 1, "action:a": 1, "state:finish": 1}
    assert usage.waits == 1


def test_a_parallel_counts_once_plus_its_branches() -> None:
    branch = {"StartAt": "x", "States": {"x": invoke("${Action_a}", Next="y"), "y": {"Type": "Pass", "End": True}}}
    machine = {"StartAt": "par", "States": {
        "par": {"Type": "Parallel", "Branches": [branch, branch, branch], "Next": "join"},
        "join": {"Type": "Pass", "End": True},
    }}
    usage = walk(machine)
    assert usage.transitions == 1 + 3 * 2 + 1
    assert usage.invocations["action:a"] == 3


def test_a_choice_follows_its_most_expensive_alternative_only() -> None:
    machine = {"StartAt": "c", "States": {
        "c": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "cheap"}],
              "Default": "dear"},
        "cheap": {"Type": "Pass", "Next": "end"},
        "dear": invoke("${Action_a}", Next="dear2"),
        "dear2": invoke("${Action_a}", Next="end"),
        "end": {"Type": "Succeed"},
    }}
    usage = walk(machine)
    assert usage.transitions == 1 + 2 + 1  # c, dear, dear2, end
    assert usage.invocations["action:a"] == 2


def test_decide_operations_count_their_skipped_records_in_batches_of_25() -> None:
    skipped = [{"stepId": f"s{i}"} for i in range(30)]
    machine = {"StartAt": "d", "States": {
        "d": invoke("${StateFunctionArn}", {"op": "decide", "skipped": skipped}, End=True)}}
    usage = walk(machine)
    assert (usage.skipped_records, usage.skipped_batches) == (30, 2)


def test_sub_workflows_and_external_functions_are_recognised() -> None:
    machine = {"StartAt": "sub", "States": {
        "sub": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": "${Workflow_child}"}, "Next": "ext"},
        "ext": invoke("arn:aws:lambda:eu-west-1:123456789012:function:partner", End=True),
    }}
    usage = walk(machine)
    assert usage.children == {"child": 1}
    assert usage.invocations == {"external:arn:aws:lambda:eu-west-1:123456789012:function:partner": 1}


# -- shipped workflows ------------------------------------------------------------------------------------
def test_content_generation_takes_nine_transitions_and_eight_invocations(repo_root: Path, tmp_path: Path) -> None:
    result = estimate(repo_root / "statemachines" / "content-generation.yaml", tmp_path)
    # coafi.start, coafi.run, six steps, coafi.succeeded
    assert result.usage.transitions == 9
    assert result.usage.invocations["state:start"] == 1 and result.usage.invocations["state:finish"] == 1
    assert sum(v for k, v in result.usage.invocations.items() if k.startswith("action:")) == 6
    assert result.trigger == "event"
    lines = {line.component: line for line in result.lines}
    assert lines["Step Functions state transitions"].quantity == 9_000
    assert lines["trigger: EventBridge custom events"].quantity == 1_000  # the triggering event
    assert lines["EventBridge custom events"].quantity == 0  # no action's events measured (defaults only)
    assert lines["SQS requests"].quantity == 0


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[2] / "statemachines").glob("*.yaml")))
def test_every_shipped_workflow_is_priced_with_its_writes_and_what_is_left_out(
    name: str, repo_root: Path, tmp_path: Path
) -> None:
    result = estimate(repo_root / "statemachines" / name, tmp_path)
    lines = {line.component: line for line in result.lines}
    assert lines["Step Functions state transitions"].quantity > 0 and lines["DynamoDB writes (on-demand)"].quantity > 0
    assert result.total > 0


def test_a_schedule_step_counts_its_events_and_task_record_and_says_its_task_run_is_not_included(
    repo_root: Path, tmp_path: Path
) -> None:
    result = estimate(repo_root / "statemachines" / "order-saga.yaml", tmp_path)
    assert result.usage.invocations["state:schedule"] == 1
    assert cost.DEFAULT_OPERATIONS["state:schedule"].writes == 5  # STARTED, SUCCEEDED (+ stamps), the task record
    assert any("schedule steps" in note and "not included" in note for note in result.notes)


def test_content_campaign_adds_its_children_and_takes_the_embargo_branch(repo_root: Path, tmp_path: Path) -> None:
    result = estimate(repo_root / "statemachines" / "content-campaign.yaml", tmp_path)
    assert result.usage.children == {"content-generation": 3}  # article, summary, and one announcement
    own = 19  # start, run, parallel.1 (+2 x 3 wrapped), join, choice, 7 on the embargo branch, succeeded
    assert result.usage.transitions == own + 3 * 9
    assert result.usage.waits == 1
    assert result.usage.skipped_records == 1  # the announce step of the branch not taken


def test_cost_is_linear_in_executions_and_the_total_sums_the_lines(repo_root: Path, tmp_path: Path) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    one, many = estimate(file, tmp_path, executions=1), estimate(file, tmp_path, executions=1_000)
    assert many.total == pytest.approx(one.total * 1_000)
    assert many.total == pytest.approx(sum(line.cost for line in many.lines))
    transitions = next(line for line in many.lines if line.component.startswith("Step Functions"))
    assert transitions.cost == pytest.approx(9_000 * 0.025 / 1_000)


def test_the_trigger_decides_events_or_schedules(repo_root: Path, tmp_path: Path) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    scheduled = {line.component: line.quantity for line in estimate(file, tmp_path, trigger="schedule").lines}
    assert scheduled["EventBridge Scheduler invocations"] == 1_000
    assert scheduled["EventBridge custom events"] == 0
    manual = {line.component: line.quantity for line in estimate(file, tmp_path, trigger="manual").lines}
    assert manual["EventBridge custom events"] == manual["EventBridge Scheduler invocations"] == 0


def test_an_event_trigger_adds_the_engine_api_functions_start_on_lines_of_its_own(
        repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    event = estimate(file, tmp_path, cold_start_rate=0.0)
    manual = estimate(file, tmp_path, trigger="manual", cold_start_rate=0.0)
    trigger_lines = {line.component: line.quantity for line in event.lines if line.component.startswith("trigger:")}
    assert trigger_lines == {
        "trigger: API Lambda requests": 1_000,
        "trigger: API Lambda duration (256 MB)": pytest.approx(1_000 * 0.100 * 0.25),  # default 100 ms at 256 MB
        "trigger: API Lambda INIT (0% cold starts)": 0,
        "trigger: DynamoDB writes (on-demand)": 2_000,  # start-key record: conditional put, then its ARN
        "trigger: DynamoDB reads (on-demand)": 0,
        "trigger: EventBridge custom events": 1_000,
    }
    assert not [line for line in manual.lines if line.component.startswith("trigger:")]
    assert event.total > manual.total
    assert event.to_json()["per_execution"]["trigger_invocations"] == {"api:trigger-start": 1}
    assert cost_cli.run(parse(str(file), "--results", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "8 Lambda invocations (+1 engine API, the event trigger's)" in out
    assert "the engine API function starts each execution (the 'trigger:' lines" in out


def test_a_start_workflow_command_adds_registry_reads_and_its_answer(repo_root: Path, tmp_path: Path) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    lines = {line.component: line.quantity for line in estimate(file, tmp_path, trigger="command").lines}
    assert lines["trigger: API Lambda requests"] == 1_000
    assert lines["trigger: DynamoDB reads (on-demand)"] == 2_000  # live pointer and version
    assert lines["trigger: EventBridge custom events"] == 2_000  # the command and CommandSucceeded


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item of strings and numbers (a number at most its digits)."""
    return sum(len(name.encode()) + len(next(iter(value.values())).encode()) for name, value in item.items())


def test_the_engine_api_figures_are_what_a_start_does_on_dynamodb(moto_table: str) -> None:
    """The defaults of TRIGGER_STARTS, counted: an event-triggered start and a StartWorkflow command against moto."""
    from coafi import aws
    from coafi.engine.client import WorkflowClient
    from coafi.engine.commands import handle

    arn = aws.client("stepfunctions").create_state_machine(
        name="wf", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    client = WorkflowClient(moto_table, event_bus_name="bus")
    client.register_workflow("wf", "1.0.0", arn, source="test")
    calls: list[str] = []
    aws.client("dynamodb").meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name))
    published: list[str] = []
    body = {"id": "e-1", "source": "x", "detail-type": "Y", "detail": {"n": 1}}

    def counted(key: str, event: dict[str, Any]) -> None:
        calls.clear()
        published.clear()
        outcome = handle(event, client, lambda detail_type, detail: published.append(detail_type), {"wf": arn})
        assert outcome.ok and outcome.result["started"], outcome
        figures = cost.DEFAULT_OPERATIONS[key]
        writes = [c for c in calls if c in ("PutItem", "UpdateItem", "DeleteItem")]
        reads = [c for c in calls if c in ("GetItem", "Query")]
        assert (len(calls), len(writes), len(reads), len(published)) == (
            figures.requests, figures.writes, figures.reads, figures.events), calls

    counted("api:trigger-start", {"coafiTrigger": {"workflowId": "wf"}, "event": body})
    counted("api:command-start", {"id": "c-1", "source": "app", "detail-type": "StartWorkflow",
                                  "detail": {"workflowId": "wf", "input": {"n": 2}, "idempotencyKey": "k" * 256}})
    # every write is one unit (items under 1 KB), every consistent read one (items under 4 KB)
    items = aws.client("dynamodb").scan(TableName=moto_table)["Items"]
    start_keys = [item for item in items if item["PK"]["S"].startswith("STARTKEY#")]
    assert len(start_keys) == 2 and max(_item_bytes(item) for item in start_keys) < 1024
    assert max(_item_bytes(item) for item in items) < 4096


# -- figures --------------------------------------------------------------------------------------------------
def test_measured_figures_replace_the_defaults_of_the_operations_they_cover() -> None:
    results: dict[str, dict[str, Any]] = {
        "state_writes": {"measured_at": "now", "per_key": {
            "action:a": {"duration_ms": 40.0, "requests": 3, "writes": 3, "wru": 5, "events": 1}}},
        "cold_start": {"functions": {"a": {"init_ms": 300.0}}},
        "local_e2e": {"per_key": {"state:start": {"duration_ms": 70.0}}},
    }
    figures = Figures.from_results(results)
    assert figures.of("action:a").wru == 5 and figures.of("action:a").duration_ms == 40.0
    assert figures.of("state:start").duration_ms == 70.0
    assert figures.of("state:start").wru == cost.DEFAULT_OPERATIONS["state:start"].wru
    assert figures.of("action:other") == cost.DEFAULT_OPERATIONS["action"]
    assert figures.init_of("action:a") == 300.0
    assert figures.init_of("state:finish") == cost.DEFAULT_INIT_MS


def test_an_estimate_prices_measured_units_durations_and_events() -> None:
    usage = Usage(transitions=2)
    usage.invocations["action:a"] = 2
    figures = Figures(operations={"action:a": cost.OpFigures(duration_ms=99.2, wru=3, rru=1, events=1)})
    lines = {line.component: line for line in
             Estimator({}, figures, Options(executions=1_000, cold_start_rate=0.0)).lines(usage, "manual")}
    assert lines["DynamoDB writes (on-demand)"].quantity == 6_000
    assert lines["DynamoDB reads (on-demand)"].quantity == 2_000
    assert lines["EventBridge custom events"].quantity == 2_000
    assert lines["Lambda duration (256 MB)"].quantity == pytest.approx(2 * 0.100 * 0.25 * 1_000)  # billed per ms
    assert lines["Lambda INIT (0% cold starts)"].quantity == 0


def test_figure_files_round_trip_with_their_machine(tmp_path: Path) -> None:
    path = cost.save_figures(tmp_path, "example", {"per_key": {}})
    loaded = cost.load_figures(tmp_path / cost.RESULTS_DIR)
    assert path.name == "example.json"
    assert loaded["example"]["machine"]["nproc"] and "measured_at" in loaded["example"]
    (tmp_path / cost.RESULTS_DIR / "broken.json").write_text("{not json")
    assert set(cost.load_figures(tmp_path / cost.RESULTS_DIR)) == {"example"}


def test_the_revision_names_modified_files_in_full(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    for name in ("alpha.py", "old name.py", "zeta.py"):
        (tmp_path / name).write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    (tmp_path / "alpha.py").write_text("x = 2\n")  # modified in the work tree: " M alpha.py", first entry
    git("mv", "old name.py", "new name.py")  # staged rename: "R  new name.py", then the old path
    (tmp_path / "zeta.py").write_text("x = 3\n")
    git("add", "zeta.py")  # staged: "M  zeta.py"
    (tmp_path / "untracked.py").write_text("")
    found = cost.revision(tmp_path)
    assert sorted(found["modified"]) == ["alpha.py", "new name.py", "zeta.py"]
    assert found["commit"] and len(found["commit"]) == 12


def test_memory_matches_the_functions_the_app_deploys(repo_root: Path) -> None:
    source = (repo_root / "infra" / "constructs" / "function.py").read_text()
    match = re.search(r"^MEMORY_MB = (\d+)$", source, re.MULTILINE)
    assert match is not None and int(match.group(1)) == cost.LAMBDA_MEMORY_MB


def test_prices_are_the_documented_us_east_1_list_prices() -> None:
    per_unit = {
        "transitions per 1K": cost.STEP_FUNCTIONS_PER_TRANSITION * 1_000,
        "Lambda requests per 1M": cost.LAMBDA_PER_REQUEST * 1e6,
        "Lambda GB-s": cost.LAMBDA_PER_GB_SECOND,
        "WRU per 1M": cost.DYNAMODB_PER_WRU * 1e6,
        "RRU per 1M": cost.DYNAMODB_PER_RRU * 1e6,
    }
    assert {k: round(v, 10) for k, v in per_unit.items()} == {
        "transitions per 1K": 0.025, "Lambda requests per 1M": 0.2, "Lambda GB-s": 0.0000166667,
        "WRU per 1M": 0.625, "RRU per 1M": 0.125,
    }


# -- the command ----------------------------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coafi")
    cost_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["cost", *argv])


def test_register_adds_a_cost_command_with_a_handler(repo_root: Path) -> None:
    args = parse(str(repo_root / "statemachines" / "content-generation.yaml"), "--executions", "10")
    assert args.command == "cost" and args.func is cost_cli.run and args.executions == 10
    with pytest.raises(SystemExit):
        parse("x.yaml", "--cold-start-rate", "2")


def test_cost_prints_a_table_with_a_total(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    assert cost_cli.run(parse(str(file), "--results", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "Step Functions state transitions" in out and "total" in out
    assert "9 state transitions" in out


def test_cost_json_is_machine_readable(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = repo_root / "statemachines" / "content-generation.yaml"
    assert cost_cli.run(parse(str(file), "--json", "--results", str(tmp_path), "--duration-ms", "50")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["per_execution"]["state_transitions"] == 9
    assert document["total_usd"] == pytest.approx(sum(c["cost_usd"] for c in document["components"]))


def test_cost_of_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cost_cli.run(parse(str(tmp_path / "nope.yaml"))) == 2
    assert "no such file" in capsys.readouterr().err
