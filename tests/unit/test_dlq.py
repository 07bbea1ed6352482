"""Dead-letter queues (coafi.saga.dlq) and execution redrive (coafi.saga.redrive) on moto: what is in the queue,
where each message came from, and a redrive that never loses a message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from coafi import aws
from coafi.cli.main import main
from coafi.saga.dlq import DeadLetterQueues, classify
from coafi.saga.redrive import RedriveNotSupported, redrive_execution

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/test"
PASS_MACHINE = json.dumps({"StartAt": "done", "States": {"done": {"Type": "Pass", "End": True}}})


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws._cached.cache_clear()
    with mock_aws(config={"lambda": {"use_docker": False}}):
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="app-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        tasks = sqs.create_queue(QueueName="app-tasks", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})})["QueueUrl"]
        machine = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="app-wf", definition=PASS_MACHINE, roleArn=ROLE)["stateMachineArn"]
        yield {"dlq": dlq, "dlq_arn": dlq_arn, "tasks": tasks, "machine": machine}
    aws._cached.cache_clear()


def _count(url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def _scheduler_letter(dlq: str, target: str, body: dict[str, Any]) -> str:
    sent = aws.client("sqs").send_message(QueueUrl=dlq, MessageBody=json.dumps(body), MessageAttributes={
        "ERROR_CODE": {"DataType": "String", "StringValue": "ServiceUnavailable"},
        "ERROR_MESSAGE": {"DataType": "String", "StringValue": "target throttled"},
        "SCHEDULE_ARN": {"DataType": "String", "StringValue": "arn:aws:scheduler:us-east-1:123456789012:schedule/g/s"},
        "TARGET_ARN": {"DataType": "String", "StringValue": target},
    })
    return str(sent["MessageId"])


def test_each_origin_is_recognised() -> None:
    queue = classify({"MessageId": "1", "Body": "{}", "Attributes": {
        "DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:123456789012:app-tasks", "ApproximateReceiveCount": "6"}})
    assert (queue.source, queue.target) == ("queue", "arn:aws:sqs:us-east-1:123456789012:app-tasks")
    rule = classify({"MessageId": "2", "Body": "{}", "MessageAttributes": {
        "RULE_ARN": {"DataType": "String", "StringValue": "arn:aws:events:us-east-1:1:rule/r"},
        "TARGET_ARN": {"DataType": "String", "StringValue": "arn:aws:states:us-east-1:1:stateMachine:m"},
        "ERROR_CODE": {"DataType": "String", "StringValue": "Throttling"}}})
    assert (rule.source, rule.target, rule.error) == ("eventbridge", "arn:aws:states:us-east-1:1:stateMachine:m",
                                                      "Throttling")
    record = {"version": "1.0", "requestContext": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f:$LATEST",
                                                   "condition": "RetriesExhausted"},
              "requestPayload": {"a": 1}, "responsePayload": {"errorType": "Boom", "errorMessage": "no"}}
    invocation = classify({"MessageId": "3", "Body": json.dumps(record)})
    assert (invocation.source, invocation.error) == ("lambda", "Boom: no")
    assert classify({"MessageId": "4", "Body": "hello"}).source == "unknown"


def test_show_leaves_every_message_in_the_queue(cloud: dict[str, str]) -> None:
    ids = {_scheduler_letter(cloud["dlq"], cloud["machine"], {"n": n}) for n in range(12)}
    letters = DeadLetterQueues([cloud["dlq"]]).show(limit=50)
    assert {x.messageId for x in letters} == ids
    assert all(x.source == "scheduler" and x.error == "ServiceUnavailable: target throttled" for x in letters)
    assert DeadLetterQueues([cloud["dlq"]]).show(limit=50)  # visible again at once
    [info] = DeadLetterQueues([cloud["dlq_arn"]]).list_queues()
    assert info.messages == 12 and info.sources == [cloud["tasks"]]


def test_redrive_delivers_to_the_origin_and_deletes_only_what_was_resent(cloud: dict[str, str]) -> None:
    good = _scheduler_letter(cloud["dlq"], cloud["machine"], {"order": "o-1"})
    gone = cloud["machine"].replace("app-wf", "deleted-wf")
    bad = _scheduler_letter(cloud["dlq"], gone, {"order": "o-2"})
    report = DeadLetterQueues([cloud["dlq"]]).redrive()
    by_id = {o.messageId: o for o in report.outcomes}
    assert by_id[good].redriven and not by_id[bad].redriven
    assert "StateMachineDoesNotExist" in by_id[bad].detail
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=cloud["machine"])["executions"]
    [execution] = executions
    described = aws.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"order": "o-1"}
    [kept] = DeadLetterQueues([cloud["dlq"]]).show()  # the failed re-send is still there, visible
    assert kept.messageId == bad


def test_unknown_origin_is_kept_unless_a_queue_is_named(cloud: dict[str, str]) -> None:
    aws.client("sqs").send_message(QueueUrl=cloud["dlq"], MessageBody="mystery",
                                   MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}})
    queues = DeadLetterQueues([cloud["dlq"]])
    [outcome] = queues.redrive().outcomes
    assert not outcome.redriven and "--to" in outcome.detail
    assert queues.redrive(dry_run=True, to=cloud["tasks"]).outcomes[0].detail == "dry run"
    assert _count(cloud["dlq"]) == 1
    report = queues.redrive(to=cloud["tasks"])
    assert report.redriven == 1 and _count(cloud["dlq"]) == 0
    [moved] = aws.client("sqs").receive_message(QueueUrl=cloud["tasks"], MessageAttributeNames=["All"])["Messages"]
    assert moved["Body"] == "mystery" and moved["MessageAttributes"]["kind"]["StringValue"] == "x"


def test_redrive_by_message_id_touches_no_other_message(cloud: dict[str, str]) -> None:
    first = _scheduler_letter(cloud["dlq"], cloud["machine"], {"n": 1})
    second = _scheduler_letter(cloud["dlq"], cloud["machine"], {"n": 2})
    report = DeadLetterQueues([cloud["dlq"]]).redrive(message_ids=[second])
    assert [o.messageId for o in report.outcomes] == [second] and report.redriven == 1
    assert [x.messageId for x in DeadLetterQueues([cloud["dlq"]]).show()] == [first]


def test_cli_lists_shows_and_redrives(cloud: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _scheduler_letter(cloud["dlq"], cloud["machine"], {"n": 1})
    assert main(["dlq", "--queue", cloud["dlq"], "ls"]) == 0
    assert "app-dlq  1 waiting" in capsys.readouterr().out
    assert main(["dlq", "--queue", cloud["dlq"], "show", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["source"] == "scheduler" and shown["body"] == {"n": 1}
    assert main(["dlq", "--queue", cloud["dlq"], "redrive"]) == 0
    assert "1 redriven, 0 kept" in capsys.readouterr().out
    assert _count(cloud["dlq"]) == 0


def test_redrive_execution_says_when_the_endpoint_lacks_it_and_can_restart(cloud: dict[str, str]) -> None:
    sfn = aws.client("stepfunctions")
    failing = sfn.create_state_machine(name="app-failing", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "no", "States": {"no": {"Type": "Fail", "Error": "Nope", "Cause": "always"}}}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=failing, name="run-1", input='{"x": 1}')["executionArn"]
    status = sfn.describe_execution(executionArn=execution)["status"]
    if status != "FAILED":  # moto without execute_state_machine stores executions as RUNNING
        sfn.stop_execution(executionArn=execution)
    with pytest.raises(RedriveNotSupported, match="--restart"):
        redrive_execution(execution)
    result = redrive_execution(execution, restart=True)
    assert result.mode == "restarted" and result.executionArn.endswith(":run-1-redrive-1")
    assert sfn.describe_execution(executionArn=result.executionArn)["input"] == '{"x": 1}'
    assert redrive_execution(execution, restart=True).executionArn.endswith(":run-1-redrive-2")


def test_a_failed_asynchronous_invocation_is_invoked_again_with_its_payload(cloud: dict[str, str]) -> None:
    import io
    import zipfile

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    role = aws.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function = aws.client("lambda").create_function(
        FunctionName="app-action", Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": code.getvalue()})["FunctionArn"]
    record = {"version": "1.0", "timestamp": "2026-11-25T10:00:00.000Z",
              "requestContext": {"requestId": "r-1", "functionArn": f"{function}:$LATEST",
                                 "condition": "RetriesExhausted", "approximateInvokeCount": 3},
              "requestPayload": {"order": "o-9"}, "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
              "responsePayload": {"errorType": "Boom", "errorMessage": "down"}}
    aws.client("sqs").send_message(QueueUrl=cloud["dlq"], MessageBody=json.dumps(record))
    queues = DeadLetterQueues([cloud["dlq"]])
    [letter] = queues.show()
    assert (letter.source, letter.target, letter.error) == ("lambda", f"{function}:$LATEST", "Boom: down")
    [outcome] = queues.redrive().outcomes
    assert outcome.redriven and outcome.detail.startswith(f"invoked {function} asynchronously (status 202)")
    assert _count(cloud["dlq"]) == 0
    # --to moves the record itself to a queue, as asked
    aws.client("sqs").send_message(QueueUrl=cloud["dlq"], MessageBody=json.dumps(record))
    [moved] = queues.redrive(to=cloud["tasks"]).outcomes
    assert moved.redriven and _count(cloud["tasks"]) == 1
