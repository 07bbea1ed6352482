"""infra/constructs/saga.py: failed asynchronous invocations of every function go to the dead-letter queue, and a
workflow with a schedule step lets the state function schedule tasks (and nothing more); cdk-nag and cfn-lint
clean. Synthesized on a small project with a saga workflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from coafi.saga.dlq import OUTPUT_DEAD_LETTER_URL
from infra.constructs.saga import ASYNC_RETRY_ATTEMPTS
from tests.infra.conftest import Synth, project_context, synthesize, write_project

DEFINITIONS = {
    "saga.yaml": """
        id: saga
        name: Saga
        version: "1"
        steps:
          - id: reserve
            action: echo
            compensate: store
          - id: later
            type: schedule
            dependencies: [reserve]
            parameters:
              task: workflow:other
              delaySeconds: 86400
    """,
    "other.yaml": """
        id: other
        name: Other
        version: "1"
        steps:
          - id: only
            action: store
    """,
}
STATE_DESCRIPTION = "COAFI state function of Saga: records executions and steps"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = write_project(tmp_path_factory.mktemp("saga-project"), DEFINITIONS)
    return synthesize(tmp_path_factory.mktemp("cdk-saga"), **project_context(root, **{"coafi:stackName": "Saga"}))


def _dead_letter_id(synth: Synth) -> str:
    return next(k for k, q in synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"])


def _task_queue_id(synth: Synth) -> str:
    return next(k for k, q in synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_dead_letters_its_failed_asynchronous_invocations(synth: Synth) -> None:
    functions = set(synth.of_type("AWS::Lambda::Function"))
    configs = synth.of_type("AWS::Lambda::EventInvokeConfig")
    configured = {c["Properties"]["FunctionName"]["Ref"] for c in configs.values()}
    assert configured == functions  # state function, dispatcher, every action
    for config in configs.values():
        properties = config["Properties"]
        assert properties["Qualifier"] == "$LATEST"
        assert properties["MaximumRetryAttempts"] == ASYNC_RETRY_ATTEMPTS
        assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": [_dead_letter_id(synth), "Arn"]}
        role_id = synth.resources[properties["FunctionName"]["Ref"]]["Properties"]["Role"]["Fn::GetAtt"][0]
        sends = [s for s in synth.role_statements(role_id) if "sqs:SendMessage" in _as_list(s["Action"])]
        assert any({"Fn::GetAtt": [_dead_letter_id(synth), "Arn"]} in _as_list(s["Resource"]) for s in sends)


def test_the_state_function_may_schedule_tasks_and_nothing_more(synth: Synth) -> None:
    function_id = synth.function_id(STATE_DESCRIPTION)
    function = synth.resources[function_id]["Properties"]
    env = function["Environment"]["Variables"]
    assert {"COAFI_TASK_QUEUE_URL", "COAFI_TASK_QUEUE_ARN", "COAFI_DEAD_LETTER_QUEUE_ARN",
            "COAFI_SCHEDULE_GROUP_NAME", "COAFI_TASK_SCHEDULER_ROLE_ARN"} <= set(env)
    statements = synth.role_statements(function["Role"]["Fn::GetAtt"][0])
    [create] = [s for s in statements if _as_list(s["Action"]) == ["scheduler:CreateSchedule"]]
    assert create["Resource"]["Fn::Join"][1][-1].endswith(":schedule/Saga-schedules/task-*")
    [passrole] = [s for s in statements if _as_list(s["Action"]) == ["iam:PassRole"]]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    scheduler_role = next(k for k, v in synth.of_type("AWS::IAM::Role").items()
                          if "delayed and cron tasks" in v["Properties"].get("Description", ""))
    assert passrole["Resource"] == {"Fn::GetAtt": [scheduler_role, "Arn"]}
    sends = [r for s in statements if "sqs:SendMessage" in _as_list(s["Action"]) for r in _as_list(s["Resource"])]
    assert sorted(r["Fn::GetAtt"][0] for r in sends) == sorted([_task_queue_id(synth), _dead_letter_id(synth)])
    for statement in statements:
        assert not any(a.startswith("scheduler:") and a != "scheduler:CreateSchedule"
                       for a in _as_list(statement["Action"]))


def test_the_compensation_action_may_be_invoked_by_the_workflow(synth: Synth) -> None:
    _, machine = synth.state_machine("Saga_saga")
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    text = str(synth.role_statements(role_id))
    store = next(k for k, v in synth.of_type("AWS::Lambda::Function").items()
                 if v["Properties"].get("Description", "").startswith("COAFI action store"))
    assert store in text


def test_coafi_dlq_finds_the_queue_in_the_outputs(synth: Synth) -> None:
    outputs = synth.template.to_json()["Outputs"]
    assert outputs[OUTPUT_DEAD_LETTER_URL]["Value"] == {"Ref": _dead_letter_id(synth)}


def test_cdk_nag_has_no_unsuppressed_findings(synth: Synth) -> None:
    annotations = Annotations.from_stack(synth.stack)
    findings = [*annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")),
                *annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))]
    assert not findings, "\n".join(f"{f.id}: {f.entry.data}" for f in findings)


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), "--ignore-checks", "W3005", "--", str(synth.template_file)],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
