"""The operations view: encrypted alarm topic, one dashboard row per workflow, alarms with the thresholds of
each definition's ``alarms:`` block (defaults when absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

from coafi.definitions.models import AlarmSettings
from infra.constructs.observability import MonitoredWorkflow, Observability
from tests.infra.conftest import Synth, project_context, synthesize, write_project

ALARMS_DEFINITIONS = {
    # strict and lenient share the "shared" action: its alarms take strict's (lower) thresholds.
    "strict.yaml": """
        id: strict
        name: Strict
        version: "1"
        alarms:
          failedExecutions: 3
          timedOutExecutions: null
          periodMinutes: 15
          evaluationPeriods: 2
          datapointsToAlarm: 2
          functionErrors: 2
        steps:
          - {id: first, action: shared}
          - {id: second, action: store, dependencies: [first]}
    """,
    "lenient.yaml": """
        id: lenient
        name: Lenient
        version: "1"
        alarms: {functionErrors: 10, functionThrottles: 4}
        steps:
          - {id: only, action: shared}
    """,
    "quiet.yaml": """
        id: quiet
        name: Quiet
        version: "1"
        alarms: {enabled: false}
        steps:
          - {id: hush, action: quiet-only}
    """,
}


@pytest.fixture(scope="session")
def alarms_app(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = write_project(tmp_path_factory.mktemp("alarms-project"), ALARMS_DEFINITIONS,
                         actions=("shared", "store", "quiet-only", "unused"))
    return synthesize(tmp_path_factory.mktemp("cdk-alarms"), **project_context(root, **{"coafi:stackName": "Ops"}))


# -- reading the template ---------------------------------------------------------------------------------


def _token(value: dict[str, Any]) -> str:
    if "Ref" in value:
        return f"Ref:{value['Ref']}"
    return "GetAtt:" + ".".join(value["Fn::GetAtt"])


def dashboard(synth: Synth) -> dict[str, Any]:
    """The dashboard body as JSON, each CloudFormation reference written as ``Ref:<id>``/``GetAtt:<id>.<attr>``."""
    (resource,) = synth.of_type("AWS::CloudWatch::Dashboard").values()
    body = resource["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return json.loads("".join(p if isinstance(p, str) else _token(p) for p in parts))  # type: ignore[no-any-return]


def alarms(synth: Synth) -> dict[str, dict[str, Any]]:
    """Alarm properties by alarm name."""
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()}


def machine_ref(synth: Synth, name: str) -> str:
    logical_id, _ = synth.state_machine(name)
    return logical_id


def topic_id(synth: Synth) -> str:
    (logical_id,) = [k for k, t in synth.of_type("AWS::SNS::Topic").items()
                     if t["Properties"].get("DisplayName", "").endswith(" alarms")]  # not the escalation topic
    return logical_id


def dlq_id(synth: Synth) -> str:
    queues = synth.of_type("AWS::SQS::Queue")
    (logical_id,) = [k for k, q in queues.items() if "RedrivePolicy" not in q["Properties"]]
    return logical_id


def function_ids(synth: Synth) -> dict[str, str]:
    """Logical id of every function by label: action name, or coafi-state."""
    ids: dict[str, str] = {}
    for logical_id, function in synth.of_type("AWS::Lambda::Function").items():
        description = function["Properties"].get("Description", "")
        if description.startswith("COAFI action "):
            ids[description.removeprefix("COAFI action ")] = logical_id
        elif description.startswith("COAFI state function"):
            ids["coafi-state"] = logical_id
    return ids


def graph_metrics(widget: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    return [tuple(m) for m in widget["properties"]["metrics"]]


# -- topic ------------------------------------------------------------------------------------------------


def test_alarm_topic_is_encrypted_with_a_rotated_key_cloudwatch_may_use(sample: Synth) -> None:
    topic = sample.resources[topic_id(sample)]
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = sample.resources[key_id]
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert [sorted(s["Action"]) for s in cloudwatch] == [["kms:Decrypt", "kms:GenerateDataKey*"]]
    assert not any(a == "kms:*" for s in statements for a in s["Action"])


def test_alarm_topic_is_ssl_only_and_open_to_this_apps_alarms_only(sample: Synth) -> None:
    (policy,) = [p for p in sample.of_type("AWS::SNS::TopicPolicy").values()
                 if p["Properties"]["Topics"] == [{"Ref": topic_id(sample)}]]
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id(sample)}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny == [{
        "Action": "sns:Publish", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
        "Principal": "*", "Resource": {"Ref": topic_id(sample)}, "Sid": "AllowPublishThroughSSLOnly",
    }]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = "".join(p if isinstance(p, str) else _token(p)
                         for p in allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1])
    assert source_arn.endswith(":alarm:Coafi-*")


def test_outputs_name_the_topic_and_the_dashboard(sample: Synth) -> None:
    outputs = sample.template.to_json()["Outputs"]
    assert outputs["SnsTopicArn"]["Value"] == {"Ref": topic_id(sample)}
    (dashboard_id, resource), = sample.of_type("AWS::CloudWatch::Dashboard").items()
    assert outputs["DashboardName"]["Value"] == {"Ref": dashboard_id}
    assert resource["Properties"]["DashboardName"] == "Coafi-workflows"


# -- alarms -----------------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_on_alarm_and_recovery(sample: Synth) -> None:
    found = alarms(sample)
    assert found
    for name, props in found.items():
        assert props["AlarmActions"] == [{"Ref": topic_id(sample)}], name
        assert props["OKActions"] == [{"Ref": topic_id(sample)}], name
        assert props["TreatMissingData"] == "notBreaching", name
        assert name.startswith("Coafi-"), name


@pytest.mark.parametrize("workflow", ["content-generation", "content-campaign"])
def test_default_workflow_alarms(sample: Synth, workflow: str) -> None:
    found = alarms(sample)
    machine = machine_ref(sample, f"Coafi_{workflow}")
    for suffix, metric in (("executions-failed", "ExecutionsFailed"), ("executions-timed-out", "ExecutionsTimedOut"),
                           ("executions-throttled", "ExecutionThrottled")):
        props = found[f"Coafi-{workflow}-{suffix}"]
        assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/States", metric, "Sum")
        assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine}}]
        assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (300, 1, 1)


def test_errors_and_throttles_alarm_of_every_function(sample: Synth) -> None:
    found = alarms(sample)
    functions = function_ids(sample)
    assert "coafi-state" in functions and len(functions) >= 2
    for label, logical_id in functions.items():
        for suffix, metric in (("errors", "Errors"), ("throttles", "Throttles")):
            props = found[f"Coafi-fn-{label}-{suffix}"]
            assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", metric, "Sum")
            assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]
            assert props["Threshold"] == 1


def test_dead_letter_queue_alarm_goes_off_on_the_first_message(sample: Synth) -> None:
    props = alarms(sample)["Coafi-dlq-not-empty"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == \
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id(sample), "QueueName"]}}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_thresholds_come_from_the_definitions_alarms_block(alarms_app: Synth) -> None:
    found = alarms(alarms_app)
    strict = found["Ops-strict-executions-failed"]
    assert (strict["Threshold"], strict["Period"], strict["EvaluationPeriods"], strict["DatapointsToAlarm"]) == \
        (3, 900, 2, 2)
    assert "Ops-strict-executions-timed-out" not in found  # null turns that alarm off
    assert found["Ops-strict-executions-throttled"]["Threshold"] == 1  # not set: the default
    assert found["Ops-lenient-executions-failed"]["Period"] == 300
    assert not [name for name in found if name.startswith("Ops-quiet-")]  # enabled: false


def test_a_shared_function_gets_the_strictest_thresholds_of_its_workflows(alarms_app: Synth) -> None:
    found = alarms(alarms_app)
    functions = function_ids(alarms_app)
    shared = found["Ops-fn-shared-errors"]
    assert shared["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": functions["shared"]}}]
    assert (shared["Threshold"], shared["Period"], shared["EvaluationPeriods"]) == (2, 900, 2)  # strict's
    assert "strict" in shared["AlarmDescription"]
    throttles = found["Ops-fn-shared-throttles"]
    assert throttles["Threshold"] == 1  # strict's default 1 beats lenient's 4
    assert found["Ops-fn-coafi-state-errors"]["Threshold"] == 2  # the state function serves every workflow
    # only quiet (alarms off) invokes quiet-only: no alarm; no workflow invokes unused: the defaults
    assert "Ops-fn-quiet-only-errors" not in found
    assert found["Ops-fn-unused-errors"]["Threshold"] == 1
    assert found["Ops-fn-unused-errors"]["Period"] == 300


# -- dashboard --------------------------------------------------------------------------------------------


def test_dashboard_has_a_row_per_workflow_with_executions_duration_errors_and_dlq(sample: Synth) -> None:
    widgets = dashboard(sample)["widgets"]
    assert widgets[0]["type"] == "alarm"
    assert len(widgets[0]["properties"]["alarms"]) == len(alarms(sample))
    functions = function_ids(sample)
    dlq = f"GetAtt:{dlq_id(sample)}.QueueName"
    expected_functions = {
        "content-generation": {"coafi-state", "validate-content-parameters", "check-user-permissions",
                               "generate-content", "store-content", "update-registry", "notify-content-generated"},
        "content-campaign": {"coafi-state"},
    }
    for workflow, labels in expected_functions.items():
        (index,) = [i for i, w in enumerate(widgets) if w["type"] == "text"
                    and f"`{workflow}`" in w["properties"]["markdown"]]
        executions, duration, errors, depth = widgets[index + 1: index + 5]
        assert len({w["y"] for w in (executions, duration, errors, depth)}) == 1  # one row
        machine = f"Ref:{machine_ref(sample, f'Coafi_{workflow}')}"
        assert [(m[0], m[1], m[2], m[3], m[4]["stat"]) for m in graph_metrics(executions)] == [
            ("AWS/States", name, "StateMachineArn", machine, "Sum")
            for name in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed")
        ]
        assert [(m[1], m[3], m[4]["stat"]) for m in graph_metrics(duration)] == [
            ("ExecutionTime", machine, p) for p in ("p50", "p90", "p99")
        ]
        assert {(m[0], m[1], m[2], m[4]["stat"]) for m in graph_metrics(errors)} == \
            {("AWS/Lambda", "Errors", "FunctionName", "Sum")}
        assert {m[4]["label"]: m[3] for m in graph_metrics(errors)} == \
            {label: f"Ref:{functions[label]}" for label in labels}
        assert graph_metrics(depth) == [
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq,
             {"label": "Messages visible", "stat": "Maximum"})
        ]


def test_dashboard_keeps_the_row_of_a_workflow_without_alarms(alarms_app: Synth) -> None:
    titles = [w["properties"].get("title", "") for w in dashboard(alarms_app)["widgets"]]
    assert "quiet: executions" in titles
    assert "lenient: executions" in titles and "strict: executions" in titles


# -- construct inputs -------------------------------------------------------------------------------------


def _bare_stack() -> tuple[cdk.Stack, sfn.StateMachine, lambda_.Function, sqs.Queue]:
    stack = cdk.Stack(cdk.App(), "Bare")
    body = sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    machine = sfn.StateMachine(stack, "Machine", definition_body=body)
    function = lambda_.Function(stack, "Fn", code=lambda_.Code.from_inline("def handler(e, c): pass"),
                                handler="index.handler", runtime=lambda_.Runtime.PYTHON_3_12)
    return stack, machine, function, sqs.Queue(stack, "Dlq")


def test_construct_refuses_functions_it_was_not_given() -> None:
    stack, machine, function, queue = _bare_stack()
    workflow = MonitoredWorkflow("wf", machine, ("coafi-state", "missing"), AlarmSettings())
    with pytest.raises(ValueError, match="invokes functions the app does not have: missing"):
        Observability(stack, "Obs", name_prefix="Bare", workflows=[workflow], functions={"coafi-state": function},
                      dead_letter_queue=queue)


def test_construct_refuses_a_workflow_twice() -> None:
    stack, machine, function, queue = _bare_stack()
    workflow = MonitoredWorkflow("wf", machine, ("coafi-state",), AlarmSettings())
    with pytest.raises(ValueError, match="monitored twice: wf"):
        Observability(stack, "Obs", name_prefix="Bare", workflows=[workflow, workflow],
                      functions={"coafi-state": function}, dead_letter_queue=queue)


def test_repository_definitions_with_an_alarms_block_load(tmp_path: Path) -> None:
    from coafi.definitions import load_definition

    path = write_project(tmp_path, ALARMS_DEFINITIONS, actions=("shared", "store", "quiet-only")) / "statemachines"
    strict = load_definition(path / "strict.yaml").alarm_settings
    assert (strict.failedExecutions, strict.timedOutExecutions, strict.datapoints) == (3, None, 2)
    assert load_definition(path / "quiet.yaml").alarm_settings.enabled is False


def test_alarms_app_passes_the_security_bar(alarms_app: Synth) -> None:
    from tests.infra import test_security as security

    security.test_no_wildcard_action_or_resource_in_any_allow_statement(alarms_app)
    security.test_cdk_nag_aws_solutions_has_no_unsuppressed_findings(alarms_app)
    security.test_cfn_lint_finds_no_errors(alarms_app)
