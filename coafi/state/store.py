"""The data-access layer of the state table: every DynamoDB call COAFI makes for execution state.

Writes per step attempt: one when it starts, one when it ends (see docs/ARCHITECTURE.md).
Outputs are stored as JSON text so numbers and nesting survive exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from coafi import aws
from coafi.state.models import ExecutionRecord, StepRecord

#: DynamoDB items are limited to 400 KB; larger outputs are replaced by a marker (S3 offload: issue 4).
MAX_INLINE_JSON = 350_000
EXECUTION_SK = "EXECUTION"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def execution_pk(execution_id: str) -> str:
    return f"EXEC#{execution_id}"


def step_sk(step_id: str) -> str:
    return f"STEP#{step_id}"


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text.encode()) > MAX_INLINE_JSON:
        return json.dumps({"coafiTruncated": True, "bytes": len(text.encode())})
    return text


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def duration_ms(started_at: str | None, ended_at: str) -> int | None:
    start, end = _parse_time(started_at), _parse_time(ended_at)
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


class StateStore:
    """Execution and step records of one state table."""

    def __init__(self, table_name: str, *, retention_days: int = 30, client: Any | None = None) -> None:
        self.table_name = table_name
        self.retention_seconds = retention_days * 86_400
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    # -- executions ------------------------------------------------------------------------------
    def start_execution(
        self, execution_id: str, workflow_id: str, workflow_version: str, input_: Any, start_time: str
    ) -> None:
        """Record a new execution; a retried call for the same execution changes nothing."""
        now = now_iso()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    "PK": _s(execution_pk(execution_id)),
                    "SK": _s(EXECUTION_SK),
                    "executionId": _s(execution_id),
                    "workflowId": _s(workflow_id),
                    "workflowVersion": _s(workflow_version),
                    "status": _s("RUNNING"),
                    "inputJson": _s(_json(input_)),
                    "startTime": _s(start_time or now),
                    "updateTime": _s(now),
                },
                ConditionExpression="attribute_not_exists(PK)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    def finish_execution(
        self, execution_id: str, workflow_id: str, status: str, *, output: Any = None,
        error: dict[str, str] | None = None,
    ) -> None:
        now = now_iso()
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":status": _s(status), ":now": _s(now), ":wf": _s(workflow_id),
            ":expires": _n(int(time.time()) + self.retention_seconds),
        }
        sets = ["#status = :status", "endTime = :now", "updateTime = :now", "workflowId = :wf",
                "expiresAt = :expires", "executionId = :eid"]
        values[":eid"] = _s(execution_id)
        if output is not None:
            sets.append("outputJson = :output")
            values[":output"] = _s(_json(output))
        if error is not None:
            sets.append("errorJson = :error")
            values[":error"] = _s(_json(error))
        self.client.update_item(
            TableName=self.table_name,
            Key={"PK": _s(execution_pk(execution_id)), "SK": _s(EXECUTION_SK)},
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        if status == "FAILED":
            for step in self.list_steps(execution_id):
                if step.status == "RUNNING":
                    self.step_failed(execution_id, step.stepId, error or {"type": "WorkflowFailed"},
                                     started_at=step.startedAt.isoformat() if step.startedAt else None)

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        item = self.client.get_item(
            TableName=self.table_name,
            Key={"PK": _s(execution_pk(execution_id)), "SK": _s(EXECUTION_SK)},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return None
        plain = _plain(item)
        return ExecutionRecord.model_validate(
            plain | {"input": _loads(plain.get("inputJson")), "output": _loads(plain.get("outputJson")),
                     "error": _loads(plain.get("errorJson"))}
        )

    # -- steps -----------------------------------------------------------------------------------
    def step_started(
        self, execution_id: str, workflow_id: str, step_id: str, *, step_name: str, step_type: str,
        action: str,
    ) -> str:
        """Mark a step RUNNING (one more attempt); returns when its first attempt started."""
        now = now_iso()
        result = self.client.update_item(
            TableName=self.table_name,
            Key={"PK": _s(execution_pk(execution_id)), "SK": _s(step_sk(step_id))},
            UpdateExpression=(
                "SET #status = :running, executionId = :eid, workflowId = :wf, stepId = :sid, "
                "stepName = :name, stepType = :type, #action = :action, "
                "startedAt = if_not_exists(startedAt, :now), attemptStartedAt = :now, updateTime = :now, "
                "attempts = if_not_exists(attempts, :zero) + :one REMOVE endedAt, errorJson, durationMs"
            ),
            ExpressionAttributeNames={"#status": "status", "#action": "action"},
            ExpressionAttributeValues={
                ":running": _s("RUNNING"), ":eid": _s(execution_id), ":wf": _s(workflow_id),
                ":sid": _s(step_id), ":name": _s(step_name), ":type": _s(step_type),
                ":action": _s(action), ":now": _s(now), ":zero": _n(0), ":one": _n(1),
            },
            ReturnValues="ALL_NEW",
        )
        started: str = result["Attributes"]["startedAt"]["S"]
        return started

    def step_succeeded(self, execution_id: str, step_id: str, output: Any, *, started_at: str | None) -> None:
        self._end_step(execution_id, step_id, "SUCCEEDED", started_at, {"outputJson": _s(_json(output))})

    def step_failed(
        self, execution_id: str, step_id: str, error: dict[str, str], *, started_at: str | None
    ) -> None:
        self._end_step(execution_id, step_id, "FAILED", started_at, {"errorJson": _s(_json(error))})

    def step_started_at(self, execution_id: str, step_id: str) -> str | None:
        item = self.client.get_item(
            TableName=self.table_name,
            Key={"PK": _s(execution_pk(execution_id)), "SK": _s(step_sk(step_id))},
            ProjectionExpression="startedAt",
            ConsistentRead=True,
        ).get("Item", {})
        value = item.get("startedAt", {}).get("S")
        return str(value) if value else None

    def _end_step(
        self, execution_id: str, step_id: str, status: str, started_at: str | None,
        extra: dict[str, dict[str, str]],
    ) -> None:
        now = now_iso()
        values: dict[str, Any] = {":status": _s(status), ":now": _s(now), ":sid": _s(step_id),
                                  ":eid": _s(execution_id)}
        sets = ["#status = :status", "endedAt = :now", "updateTime = :now", "stepId = :sid",
                "executionId = :eid", "startedAt = if_not_exists(startedAt, :now)"]
        elapsed = duration_ms(started_at, now)
        if elapsed is not None:
            sets.append("durationMs = :duration")
            values[":duration"] = _n(elapsed)
        for i, (name, value) in enumerate(extra.items()):
            sets.append(f"{name} = :x{i}")
            values[f":x{i}"] = value
        self.client.update_item(
            TableName=self.table_name,
            Key={"PK": _s(execution_pk(execution_id)), "SK": _s(step_sk(step_id))},
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )

    def record_step(
        self, execution_id: str, workflow_id: str, step_id: str, *, step_name: str, step_type: str,
        status: str, output: Any = None,
    ) -> None:
        """A step that started and ended at once (a decision, a skipped step)."""
        now = now_iso()
        item: dict[str, Any] = {
            "PK": _s(execution_pk(execution_id)), "SK": _s(step_sk(step_id)),
            "executionId": _s(execution_id), "workflowId": _s(workflow_id), "stepId": _s(step_id),
            "stepName": _s(step_name), "stepType": _s(step_type), "status": _s(status), "updateTime": _s(now),
        }
        if status != "SKIPPED":
            item |= {"startedAt": _s(now), "endedAt": _s(now), "durationMs": _n(0), "attempts": _n(1),
                     "outputJson": _s(_json(output))}
        self.client.put_item(TableName=self.table_name, Item=item)

    def steps_skipped(self, execution_id: str, workflow_id: str, steps: Iterable[dict[str, str]]) -> int:
        """Record steps of untaken branches as SKIPPED, 25 per batch, retrying unprocessed items."""
        now = now_iso()
        requests = [
            {"PutRequest": {"Item": {
                "PK": _s(execution_pk(execution_id)), "SK": _s(step_sk(s["stepId"])),
                "executionId": _s(execution_id), "workflowId": _s(workflow_id), "stepId": _s(s["stepId"]),
                "stepName": _s(s.get("stepName") or s["stepId"]), "stepType": _s(s.get("stepType") or "task"),
                "status": _s("SKIPPED"), "updateTime": _s(now),
            }}}
            for s in steps
        ]
        for i in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table_name: requests[i:i + 25]}
            delay = 0.05
            while pending:
                response = self.client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        return len(requests)

    def list_steps(self, execution_id: str) -> list[StepRecord]:
        """Every step record of an execution, in the order the steps started (skipped ones last)."""
        records: list[StepRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(execution_pk(execution_id)), ":prefix": _s("STEP#")},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                plain = _plain(item)
                records.append(StepRecord.model_validate(
                    plain | {"output": _loads(plain.get("outputJson")), "error": _loads(plain.get("errorJson"))}
                ))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        far = datetime.max.replace(tzinfo=UTC)
        records.sort(key=lambda r: (r.startedAt or far, r.stepId))
        return records


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            out[key] = int(value["N"]) if value["N"].lstrip("-").isdigit() else float(value["N"])
        elif "BOOL" in value:
            out[key] = value["BOOL"]
    return out


def _loads(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else None
