"""A test-only action for the fault suite (tests/e2e/test_faults_e2e.py); never deployed by the app.

The first attempt of a step (per execution and step) records itself in the state table with a conditional put
(``PK = FAULT#<executionId>``, ``SK = <stepId>``: its attempt number and the PID of its Lambda process) and then
sleeps ``firstAttemptSleepSeconds``: long enough to be cut off by the step's timeout or the function's, or to be
killed by the test. Later attempts find the record and return at once. Deterministic: which attempt misbehaves is
decided by data in DynamoDB, never by chance.
"""

from __future__ import annotations

import os
import time
from typing import Any

from coafi import aws
from coafi.config import function_settings
from coafi.runtime import StepEvent, action


@action
def handler(event: StepEvent) -> dict[str, Any]:
    ctx = event.context
    table = function_settings().table_name
    key = {"PK": {"S": f"FAULT#{ctx.executionId}"}, "SK": {"S": ctx.stepId}}
    dynamodb = aws.client("dynamodb")
    try:
        dynamodb.put_item(
            TableName=table,
            Item={**key, "firstAttempt": {"N": str(ctx.attempt)}, "pid": {"N": str(os.getpid())}},
            ConditionExpression="attribute_not_exists(PK)",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        first = False
    else:
        first = True
    if first:
        time.sleep(float(event.parameters.get("firstAttemptSleepSeconds", 0)))
        return {"attempt": ctx.attempt, "first": True}  # only when the sleep was not cut off
    dynamodb.update_item(TableName=table, Key=key, UpdateExpression="ADD laterAttempts :one",
                         ExpressionAttributeValues={":one": {"N": "1"}})
    return {"attempt": ctx.attempt, "first": False}
