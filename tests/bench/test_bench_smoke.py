"""Each benchmark script runs on a tiny size without error. No timings are asserted: the scripts inform, these
tests only keep them working. ``local_e2e`` needs LocalStack: only its pure parts are exercised here."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def bench(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def test_compile(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("compile").main(["--sizes", "10,20", "--repeat", "1"]) == 0
    assert "compile ms" in capsys.readouterr().out


def test_state_writes_counts_the_sample_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("state_writes").main(["--executions", "1", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "writes per step" in out and "state:start" in out


def test_state_writes_item_sizes_follow_dynamodb_rules() -> None:
    module = bench("state_writes")
    item = {"PK": {"S": "ab"}, "n": {"N": "12345"}, "m": {"M": {"k": {"BOOL": True}}}, "l": {"L": [{"NULL": True}]}}
    assert module.item_size(item) == (2 + 2) + (1 + 4) + (1 + 3 + 1 + 1 + 1) + (1 + 3 + 1 + 1)
    assert module.write_units(0, 10) == 1 and module.write_units(1024, 1025) == 2
    assert module.read_units(4097, consistent=False) == 1.0


def test_cold_start_of_one_function(capsys: pytest.CaptureFixture[str]) -> None:
    module = bench("cold_start")
    assert module.main(["--runs", "1", "--only", "state", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "state" in out and "shared layer" in out
    assert "pydantic, one model:" in out and "handlers with models at import over that floor" in out


def test_cold_start_reads_importtime_output() -> None:
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       500 |        700 |     pydantic.main",
        "import time:       200 |        900 |   pydantic",
        "import time:       100 |       1000 | handler",
    ])
    by_package, direct = bench("cold_start").import_breakdown(stderr)
    assert by_package == {"pydantic": 0.7, "handler": 0.1}
    assert direct == {"pydantic": 0.9}


def test_synth_of_one_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("synth").main(["--sizes", "1", "--repeat", "1", "--no-save"]) == 0
    assert "/baseline" in capsys.readouterr().out


def test_synth_definitions_are_valid(tmp_path: Path) -> None:
    from coafi.definitions import discover_actions, load_definitions

    module = bench("synth")
    module.write_definitions(tmp_path, 3)
    root = Path(module.REPO_ROOT)
    definitions = load_definitions([tmp_path], actions=discover_actions(root))
    assert [d.id for d in definitions] == ["bench-000", "bench-001", "bench-002"]


def test_local_e2e_helpers_without_localstack() -> None:
    module = bench("local_e2e")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    history: list[dict[str, Any]] = [
        {"timestamp": t0, "stateEnteredEventDetails": {"name": "a"}},
        {"timestamp": t0 + timedelta(milliseconds=250), "stateExitedEventDetails": {"name": "a"}},
    ]
    assert module.state_seconds(history) == {"a": 0.25}
    keys = module.state_keys("content-generation")
    assert keys["coafi.start"] == "state:start" and keys["generateContent"] == "action:generate-content"
    figures = {"endpoint": "http://x", "runs": 1, "concurrent": 2, "baseline_s": 0.1, "workflow_s": 1.2, "steps": 6,
               "states_s": {"generateContent": 0.2}, "handler_ms": {"generateContent": 150.0},
               "workflow_per_min": 60.0, "baseline_per_min": 600.0, "concurrent_failed": 0}
    assert "12.0x the baseline" in module.report(figures)


def test_local_load_helpers_without_localstack() -> None:
    module = bench("local_load")
    fn = "arn:aws:lambda:us-east-1:000000000000:function:CoafiStack-Validate-abc"
    history: list[dict[str, Any]] = [
        {"type": "TaskScheduled", "taskScheduledEventDetails": {
            "resourceType": "lambda", "parameters": json.dumps({"FunctionName": fn, "Payload": {}})}},
        {"type": "TaskScheduled", "taskScheduledEventDetails": {
            "resourceType": "lambda", "parameters": json.dumps({"FunctionName": fn + ":$LATEST"})}},
        {"type": "TaskScheduled", "taskScheduledEventDetails": {"resourceType": "states", "parameters": "{}"}},
    ]
    assert module.lambda_tasks(history) == {"CoafiStack-Validate-abc": 2}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [{"startDate": t0, "stopDate": t0 + timedelta(seconds=30)},
            {"startDate": t0 + timedelta(seconds=10), "stopDate": t0 + timedelta(seconds=60)}]
    assert module.per_minute(runs) == 2.0
    figures = {"executions": 2, "at_once": 2, "at_once_succeeded": 2, "at_once_per_min": 4.0, "in_flight": 1,
               "wall_s": 60.0, "per_min": 2.0,
               "accounting": {"succeeded": 2, "state_records": 2, "indexed": 2, "coafi_histories": 2,
                              "sfn_histories": 2, "lambda_tasks": 16, "lambda_invocations_metric": 16.0,
                              "workflow_metric": None, "problems": ["x: FAILED"]}}
    text = module.report(figures)
    assert "2 of 2 succeeded" in text and "2.0 executions/min" in text and "not checked" in text
    assert "PROBLEM: x: FAILED" in text


def test_run_all_orders_the_scripts_and_runs_one(capsys: pytest.CaptureFixture[str]) -> None:
    module = bench("run_all")
    names = module.scripts(with_local=False, only=[])
    assert names[:4] == ["compile", "synth", "cold_start", "state_writes"]
    assert "local_e2e" not in names and "local_load" not in names and "run_all" not in names
    assert module.scripts(with_local=True, only=[])[-2:] == ["local_e2e", "local_load"]
    assert module.main(["--quick", "--only", "compile", "--no-cost"]) == 0
    assert "compile" in capsys.readouterr().out
