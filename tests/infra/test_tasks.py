"""The Tasks construct: the dispatcher on the task queue and the Scheduler role, held to least privilege and
cdk-nag. Synthesized on the focused project (actions echo/store/unused, workflows parent/child)."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks

from coafi import naming
from coafi.tasks.store import DISPATCHER_LEADING_KEYS
from infra.config import CoafiConfig
from infra.constructs.tasks import TABLE_ACTIONS, Tasks
from infra.stack import CoafiStack
from tests.infra.conftest import CDK_CONTEXT, Synth, project_context, resources_of, synth_of

DESCRIPTION = "COAFI task dispatcher of Focus: runs queued tasks"
SQS_CONSUME = {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage",
               "sqs:GetQueueAttributes"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.fixture(scope="module")
def synth(focused_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    context = {**CDK_CONTEXT, **project_context(focused_project, **{"coafi:stackName": "Focus"})}
    app = cdk.App(context=context, outdir=str(tmp_path_factory.mktemp("cdk-tasks")))
    config = CoafiConfig.from_context(app.node)
    stack = CoafiStack(app, config.stack_name, config=config)
    assert isinstance(stack.tasks, Tasks)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return synth_of(stack, app.synth())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _one(synth: Synth, cfn_type: str, **properties: Any) -> tuple[str, dict[str, Any]]:
    found = [(k, v) for k, v in synth.of_type(cfn_type).items()
             if all(v["Properties"].get(p) == value for p, value in properties.items())]
    assert len(found) == 1, f"{len(found)} {cfn_type} with {properties}"
    return found[0]


def _ids(synth: Synth, cfn_type: str) -> list[str]:
    return sorted(synth.of_type(cfn_type))


def _action_function_ids(synth: Synth) -> list[str]:
    return sorted(k for k, v in synth.of_type("AWS::Lambda::Function").items()
                  if str(v["Properties"].get("Description", "")).startswith("COAFI action "))


def _task_queue_id(synth: Synth) -> str:
    return next(k for k, q in synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"])


def _dead_letter_id(synth: Synth) -> str:
    return next(k for k, q in synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"])


def _dispatcher(synth: Synth) -> tuple[str, dict[str, Any]]:
    function_id = synth.function_id(DESCRIPTION)
    return function_id, synth.resources[function_id]


def test_the_dispatcher_consumes_the_task_queue_and_reports_batch_item_failures(synth: Synth) -> None:
    function_id, function = _dispatcher(synth)
    mapping = _one(synth, "AWS::Lambda::EventSourceMapping", FunctionName={"Ref": function_id})[1]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [_task_queue_id(synth), "Arn"]}
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = synth.resources[_task_queue_id(synth)]["Properties"]
    # SQS refuses an event source whose function may run longer than the queue hides a message
    assert function["Properties"]["Timeout"] <= int(queue.get("VisibilityTimeout", 30))
    assert function["Properties"]["Handler"] == "handler.handler"  # COAFI's own code; the project has none


def test_the_dispatcher_knows_exactly_the_apps_actions_and_workflows(synth: Synth) -> None:
    env = _dispatcher(synth)[1]["Properties"]["Environment"]["Variables"]
    table_id = _ids(synth, "AWS::DynamoDB::GlobalTable")[0]
    assert env["COAFI_TABLE_NAME"] == {"Ref": table_id}
    assert env["POWERTOOLS_SERVICE_NAME"] == "coafi-dispatcher"
    assert "COAFI_EVENT_BUS_NAME" not in env
    # names and a prefix each, from which it derives the fixed names (coafi.naming): no maps (Lambda's 4 KB)
    action_names = {synth.resources[k]["Properties"]["FunctionName"] for k in _action_function_ids(synth)}
    assert set(naming.action_functions(env).values()) == action_names
    assert env["COAFI_ACTIONS"] == "echo,store,unused"
    assert env["COAFI_WORKFLOW_IDS"] == "child,parent"
    prefix = "".join(p if isinstance(p, str) else "|" + p["Ref"] + "|"
                     for p in env["COAFI_STATE_MACHINE_ARN_PREFIX"]["Fn::Join"][1])
    assert prefix == "arn:|AWS::Partition|:states:|AWS::Region|:|AWS::AccountId|:stateMachine:Focus_"
    machines = sorted(m["Properties"]["StateMachineName"] for m in synth.of_type(
        "AWS::StepFunctions::StateMachine").values())
    assert [prefix.rsplit(":", 1)[1] + w for w in env["COAFI_WORKFLOW_IDS"].split(",")] == machines


def test_the_dispatcher_role_reads_its_queue_writes_its_table_keys_and_runs_exactly_the_apps_targets(
    synth: Synth,
) -> None:
    _, function = _dispatcher(synth)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in synth.resources[role_id]["Properties"]
    table_id = _ids(synth, "AWS::DynamoDB::GlobalTable")[0]
    log_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    seen: set[str] = set()
    for statement in synth.role_statements(role_id):
        actions = set(_as_list(statement["Action"]))
        resources = _as_list(statement["Resource"])
        assert statement["Effect"] == "Allow"
        if actions <= SQS_CONSUME:
            assert resources == [{"Fn::GetAtt": [_task_queue_id(synth), "Arn"]}]
            seen.add("sqs")
        elif all(a.startswith("dynamodb:") for a in actions):
            assert actions == set(TABLE_ACTIONS) and "dynamodb:Scan" not in actions
            assert resources == [{"Fn::GetAtt": [table_id, "Arn"]}]  # no index, no other table
            assert statement["Condition"] == {
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(DISPATCHER_LEADING_KEYS)}}
            seen.add("dynamodb")
        elif actions == {"lambda:InvokeFunction"}:
            # the app's action functions by their fixed-name prefix: one resource however many actions
            [pattern] = resources_of(statement)
            assert pattern == "arn:<AWS::Partition>:lambda:<AWS::Region>:<AWS::AccountId>:function:Focus_action-*"
            names = [synth.resources[k]["Properties"]["FunctionName"] for k in _action_function_ids(synth)]
            function_pattern = pattern.rsplit(":", 1)[1]
            assert names and all(fnmatch.fnmatchcase(n, function_pattern) for n in names)
            other_functions = [synth.resources[k]["Properties"].get("FunctionName", "") for k in
                               _ids(synth, "AWS::Lambda::Function") if k not in _action_function_ids(synth)]
            assert not [n for n in other_functions if fnmatch.fnmatchcase(n, function_pattern)]
            assert not fnmatch.fnmatchcase("Focus-dev_action-echo", function_pattern)  # another stack's
            seen.add("lambda")
        elif actions == {"states:StartExecution"}:
            [pattern] = resources_of(statement)
            assert pattern == "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:Focus_*"
            machines = [m["Properties"]["StateMachineName"]
                        for m in synth.of_type("AWS::StepFunctions::StateMachine").values()]
            assert machines and all(fnmatch.fnmatchcase(m, "Focus_*") for m in machines)
            assert not fnmatch.fnmatchcase("Focus-dev_parent", "Focus_*")  # stack names hold no "_"
            seen.add("states")
        elif all(a.startswith("logs:") for a in actions):
            assert resources == [{"Fn::GetAtt": [log_group, "Arn"]}]
        elif "sqs:SendMessage" in actions:  # failed asynchronous invocations -> the DLQ (infra/constructs/saga.py)
            assert resources == [{"Fn::GetAtt": [_dead_letter_id(synth), "Arn"]}]
            assert actions == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
        else:
            assert actions <= XRAY and resources == ["*"], f"unexpected statement {statement}"
    assert seen == {"sqs", "dynamodb", "lambda", "states"}
    # the external Lambda ARN of the parent workflow is not a task target
    assert "partner-enrich" not in json.dumps(synth.role_statements(role_id))


def test_the_scheduler_role_may_only_send_to_the_task_queue_and_its_dlq(synth: Synth) -> None:
    role_id, role = next((k, v) for k, v in synth.of_type("AWS::IAM::Role").items()
                         if "delayed and cron tasks" in v["Properties"].get("Description", ""))
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    group_id = _ids(synth, "AWS::Scheduler::ScheduleGroup")[0]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"},
                                                   "aws:SourceArn": {"Fn::GetAtt": [group_id, "Arn"]}}}
    assert "ManagedPolicyArns" not in role["Properties"]
    [statement] = synth.role_statements(role_id)
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sqs:SendMessage")
    assert sorted(r["Fn::GetAtt"][0] for r in statement["Resource"]) == sorted(
        [_task_queue_id(synth), _dead_letter_id(synth)])
    assert "Condition" not in statement


def test_the_cli_finds_what_it_needs_in_the_outputs(synth: Synth) -> None:
    outputs = synth.template.to_json()["Outputs"]
    role_id = next(k for k, v in synth.of_type("AWS::IAM::Role").items()
                   if "delayed and cron tasks" in v["Properties"].get("Description", ""))
    assert outputs["TaskSchedulerRoleArn"]["Value"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert outputs["TaskQueueArn"]["Value"] == {"Fn::GetAtt": [_task_queue_id(synth), "Arn"]}
    assert outputs["DeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": [_dead_letter_id(synth), "Arn"]}
    assert outputs["TaskDispatcherFunctionName"]["Value"] == {"Ref": _dispatcher(synth)[0]}
    assert {"TaskQueueUrl", "ScheduleGroupName", "StateTableName"} <= set(outputs)


def test_cdk_nag_has_no_unsuppressed_findings_and_no_new_suppressions(synth: Synth) -> None:
    annotations = Annotations.from_stack(synth.stack)
    findings = [*annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")),
                *annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))]
    assert not findings, "\n".join(f"{f.id}: {f.entry.data}" for f in findings)
    function_id, function = _dispatcher(synth)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    suppressed = [(s["id"], finding) for logical_id, resource in synth.resources.items()
                  if role_id in logical_id or logical_id == function_id
                  for s in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
                  for finding in s.get("applies_to") or [None]]
    # CoafiFunction's own: Python 3.12 (L1) and X-Ray's Resource "*" (IAM5); and the app's targets by the stack's
    # prefixes, exactly those
    arn = "Resource::arn:<AWS::Partition>:{}:<AWS::Region>:<AWS::AccountId>:"
    assert sorted(set(suppressed), key=str) == sorted({
        ("AwsSolutions-L1", None), ("AwsSolutions-IAM5", "Resource::*"),
        ("AwsSolutions-IAM5", arn.format("lambda") + "function:Focus_action-*"),
        ("AwsSolutions-IAM5", arn.format("states") + "stateMachine:Focus_*")}, key=str)


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", str(synth.template_file)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
