"""The engine commands of the CLI on the in-process cloud: human output, --json, exit codes, precise errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi.cli.main import main
from coafi.definitions import load_definition
from coafi.engine import cli as engine_cli
from coafi.engine.client import WorkflowClient
from coafi.testing import InProcessCloud
from coafi.testing.inprocess import BUS, TABLE

ROOT = Path(__file__).resolve().parents[2]
BODY = {"contentType": "article", "parameters": {"topic": "cli", "lengthWords": 60},
        "metadata": {"requestId": "cli-1", "userId": "u", "role": "editor"}}


@pytest.fixture(scope="module")
def cloud() -> Iterator[InProcessCloud]:
    with InProcessCloud(ROOT, definitions=[load_definition(ROOT / "statemachines" / "content-generation.yaml")]
                        ) as cloud:
        client = WorkflowClient(TABLE, event_bus_name=BUS)
        client.register_workflow("content-generation", "1.0.0", cloud.state_machines["content-generation"])
        yield cloud


@pytest.fixture
def cli(cloud: InProcessCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    # the stack's outputs are what the LocalStack tier reads; here the client points at the in-process tables
    monkeypatch.setattr(engine_cli, "_client", lambda args: WorkflowClient(TABLE, event_bus_name=BUS))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_start_wait_status_query_history_and_ls(cli: Any) -> None:
    code, out, _ = cli("start", "content-generation", "--input", json.dumps(BODY), "--idempotency-key", "k1",
                       "--wait")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("started: arn:aws:states:") and lines[-1] == "SUCCEEDED"
    assert any("SUCCEEDED" in line and "storeContent" in line for line in lines)  # the live step lines
    execution = lines[0].split(": ", 1)[1]

    code, out, _ = cli("start", "content-generation", "--input", json.dumps(BODY), "--idempotency-key", "k1",
                       "--json")
    assert code == 0 and json.loads(out)["executionId"] == execution and json.loads(out)["started"] is False

    code, out, _ = cli("status", execution)
    assert code == 0 and "status     SUCCEEDED" in out and "notifySubscribers" in out
    code, out, _ = cli("query", execution, "steps.storeContent.status", "--json")
    assert code == 0 and json.loads(out) == "SUCCEEDED"
    code, out, _ = cli("query", execution, "input.metadata.requestId")
    assert code == 0 and out.strip() == "cli-1"
    code, out, _ = cli("history", execution, "--json")
    assert code == 0 and json.loads(out)[-1]["type"] == "WORKFLOW_SUCCEEDED"
    code, out, _ = cli("ls", "--workflow", "content-generation", "--status", "succeeded", "--json")
    assert code == 0 and execution in [e["executionId"] for e in json.loads(out)["executions"]]
    code, out, _ = cli("watch", execution, "--json")
    assert code == 0 and json.loads(out)["status"] == "SUCCEEDED"


def test_refusals_are_messages_and_exit_codes(cli: Any) -> None:
    code, _, err = cli("start", "nope", "--input", "{}")
    assert code == 1 and "workflow 'nope' is not registered (registered: content-generation)" in err
    code, out, _ = cli("start", "nope", "--json")
    assert code == 1 and json.loads(out)["error"] == {
        "type": "WorkflowNotRegistered", "message": json.loads(out)["error"]["message"], "field": "workflowId"}
    code, _, err = cli("query", "arn:aws:states:us-east-1:123456789012:execution:coafi-content-generation:x",
                       "status")
    assert code == 1 and "no execution" in err
    code, _, err = cli("workflows", "register", "only-one-arg")
    assert code == 1 and "takes 3 arguments, not 1" in err
    with pytest.raises(SystemExit):
        cli("start", "content-generation", "--input", "{not json")


def test_the_registry_from_the_command_line(cli: Any, cloud: InProcessCloud) -> None:
    arn = cloud.state_machines["content-generation"]
    assert cli("workflows", "register", "content-generation", "2.0.0", arn, "--no-live")[0] == 0
    code, out, _ = cli("workflows", "ls")
    assert code == 0 and "* content-generation" in out and "2.0.0" in out
    assert cli("workflows", "live", "content-generation", "2.0.0")[0] == 0
    code, out, _ = cli("workflows", "--json")
    [workflow] = json.loads(out)
    assert workflow["liveVersion"] == "2.0.0"
    code, out, _ = cli("workflows", "unregister", "content-generation", "2.0.0", "--json")
    assert code == 0 and json.loads(out) == {"unregistered": ["2.0.0"]}
    code, _, err = cli("start", "content-generation")
    assert code == 1 and "has no live version (registered versions: 1.0.0)" in err
    assert cli("workflows", "live", "content-generation", "1.0.0")[0] == 0
