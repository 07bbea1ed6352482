"""Test helpers for tasks on moto (or any endpoint): the queue, DLQ, schedule group and role the stack would
create, and SQS events shaped like the ones Lambda hands the dispatcher.

    with InProcessCloud(project) as cloud:
        resources = create_task_resources("t1")
        scheduler = TaskScheduler(resources.settings(coafi.testing.inprocess.TABLE))
        record = scheduler.schedule_task(Task(type="echo"))
        event = sqs_event(receive(resources.queue_url), resources.queue_arn)
        DispatcherRuntime(TaskDispatcher(...)).handle(event, FakeContext())
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from coafi import aws
from coafi.tasks.settings import TaskSettings
from coafi.testing.lambda_context import FakeLambdaContext as FakeLambdaContext  # re-exported for tests


@dataclass(frozen=True)
class TaskResources:
    queue_url: str
    queue_arn: str
    dead_letter_url: str
    dead_letter_arn: str
    schedule_group: str
    scheduler_role_arn: str

    def settings(self, table_name: str, **overrides: Any) -> TaskSettings:
        values: dict[str, Any] = {
            "table_name": table_name, "queue_url": self.queue_url, "schedule_group": self.schedule_group,
            "scheduler_role_arn": self.scheduler_role_arn, **overrides,
        }
        return TaskSettings(**values)


def create_task_resources(suffix: str | None = None, *, max_receive_count: int = 5) -> TaskResources:
    """A task queue with its DLQ (redrive after ``max_receive_count``), a schedule group and a Scheduler role."""
    suffix = suffix or uuid.uuid4().hex[:8]
    sqs = aws.client("sqs")
    dead_letter_url = sqs.create_queue(QueueName=f"coafi-tasks-dlq-{suffix}")["QueueUrl"]
    dead_letter_arn = queue_arn(dead_letter_url)
    url = sqs.create_queue(QueueName=f"coafi-tasks-{suffix}", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count}),
    })["QueueUrl"]
    group = f"coafi-schedules-{suffix}"
    aws.client("scheduler").create_schedule_group(Name=group)
    role = aws.client("iam").create_role(
        RoleName=f"coafi-task-scheduler-{suffix}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    return TaskResources(url, queue_arn(url), dead_letter_url, dead_letter_arn, group, role)


def queue_arn(queue_url: str) -> str:
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def receive(queue_url: str, *, max_messages: int = 10, visibility_timeout: int = 30) -> list[dict[str, Any]]:
    """Every message visible now (up to ``max_messages``), received once (hidden for ``visibility_timeout``)."""
    sqs = aws.client("sqs")
    messages: list[dict[str, Any]] = []
    while len(messages) < max_messages:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - len(messages)),
                                    VisibilityTimeout=visibility_timeout, AttributeNames=["All"],
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
    return messages


def sqs_event(messages: list[dict[str, Any]], source_arn: str) -> dict[str, Any]:
    """The Lambda event an SQS event source mapping delivers for ``messages`` (as ``receive`` returns them)."""
    region = source_arn.split(":")[3] if source_arn.count(":") >= 5 else aws.region()
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes") or {})
        attributes.setdefault("ApproximateReceiveCount", "1")
        attributes.setdefault("SentTimestamp", str(int(time.time() * 1000)))
        records.append({
            "messageId": message["MessageId"], "receiptHandle": message.get("ReceiptHandle", ""),
            "body": message["Body"], "attributes": attributes,
            "messageAttributes": {k: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType")}
                                  for k, v in (message.get("MessageAttributes") or {}).items()},
            "md5OfBody": message.get("MD5OfBody", ""), "eventSource": "aws:sqs", "eventSourceARN": source_arn,
            "awsRegion": region,
        })
    return {"Records": records}
