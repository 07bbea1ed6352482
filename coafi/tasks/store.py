"""The tasks' data-access layer, on the state table (keys in ``coafi.state.schema``).

| item | PK | SK |
|---|---|---|
| task | ``TASK#<taskId>`` | ``TASK`` |
| worker | ``WORKERS`` | ``WORKER#<workerId>`` |
| dispatcher idempotency (Powertools) | ``IDEMPOTENCY#tasks`` | ``<function>.<handler>#<hash of taskId, occurrence>`` |

Every status change is one conditional ``UpdateItem``: a transition only happens from the statuses it is
allowed from, and the dispatcher's writes also name the claim token it holds, so a late or duplicate writer
never overwrites a newer state. Task records carry the state table's sparse ``byStatus`` index attributes with
a ``TASK#`` prefix (``idxStatus = TASK#<status>``, ``idxStart = <createdAt>#<id>``), so tasks are listed by
status without a scan and never show up among executions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from coafi import aws
from coafi.state import schema
from coafi.tasks.errors import TaskAlreadyExists
from coafi.tasks.models import (
    PENDING_STATUSES,
    Route,
    Task,
    TaskErrorInfo,
    TaskRecord,
    TaskStatus,
    Worker,
)

TASK_PREFIX = "TASK#"
TASK_SK = "TASK"
WORKERS_PK = "WORKERS"
WORKER_PREFIX = "WORKER#"
IDEMPOTENCY_PK = "IDEMPOTENCY#tasks"
#: The partition keys the dispatcher may touch (its IAM policy's dynamodb:LeadingKeys, infra/constructs/tasks.py).
DISPATCHER_LEADING_KEYS = (f"{TASK_PREFIX}*", WORKERS_PK, f"{IDEMPOTENCY_PK}")
MAX_OUTPUT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4000
_BATCH_GET = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def iso(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def task_key(task_id: str) -> dict[str, Any]:
    return {schema.PARTITION_KEY: {"S": f"{TASK_PREFIX}{task_id}"}, schema.SORT_KEY: {"S": TASK_SK}}


def worker_key(worker_id: str) -> dict[str, Any]:
    return {schema.PARTITION_KEY: {"S": WORKERS_PK}, schema.SORT_KEY: {"S": f"{WORKER_PREFIX}{worker_id}"}}


def _ser(value: Any) -> dict[str, Any]:
    return dict(_serializer.serialize(value))


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        plain = _deserializer.deserialize(value)
        if isinstance(plain, Decimal):
            plain = int(plain) if plain == int(plain) else float(plain)
        out[key] = plain
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def output_json(output: Any) -> str:
    text = _dumps(output)
    size = len(text.encode())
    if size > MAX_OUTPUT_BYTES:
        return _dumps({"truncated": True, "bytes": size})
    return text


def error_json(error: TaskErrorInfo) -> str:
    return _dumps({"type": error.type[:256], "message": error.message[:MAX_ERROR_CHARS]})


def _used(names: Mapping[str, str], *expressions: str) -> dict[str, str]:
    """The attribute-name placeholders the expressions use (DynamoDB refuses unused ones)."""
    used = {m for text in expressions for m in re.findall(r"#\w+", text)}
    return {k: v for k, v in names.items() if k in used}


def _conditional_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


class _Update:
    """One UpdateItem: SET / ADD / REMOVE clauses and a condition, with generated placeholders."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {"#status": "status", "#route": "route"}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.adds: list[str] = []
        self.removes: list[str] = []

    def _name(self, attribute: str) -> str:
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _ser(value)
        return placeholder

    def set(self, **attributes: Any) -> _Update:
        for attribute, value in attributes.items():
            if value is None:
                self.removes.append(self._name(attribute))
            else:
                self.sets.append(f"{self._name(attribute)} = {self.value(value)}")
        return self

    def status(self, status: TaskStatus) -> _Update:
        self.sets.append(f"#status = {self.value(status.value)}")
        return self.set(**{schema.BY_STATUS.partition_key: f"{TASK_PREFIX}{status.value}"})

    def add(self, attribute: str, amount: int = 1) -> _Update:
        self.adds.append(f"{self._name(attribute)} {self.value(amount)}")
        return self

    def remove(self, *attributes: str) -> _Update:
        self.removes.extend(self._name(a) for a in attributes)
        return self

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


class TaskStore:
    """Task and worker items of the state table."""

    def __init__(self, table_name: str, *, retention_days: int = 30, client: Any = None) -> None:
        self.table_name = table_name
        self.retention = timedelta(days=retention_days)
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    def expires_at(self, moment: datetime) -> int:
        """TTL of a record that is final (or due) at ``moment``: kept ``retention_days`` after it."""
        return int((moment + self.retention).timestamp())

    # -- tasks: scheduler side --------------------------------------------------------------------------------
    def create(self, task: Task, *, status: TaskStatus, route: Route, now: datetime, run_at: datetime | None = None,
               cron: str | None = None, timezone: str | None = None, schedule_name: str | None = None) -> TaskRecord:
        """Write a new task record; ``TaskAlreadyExists`` when the id is taken."""
        created = iso(now)
        attributes: dict[str, Any] = {
            "taskId": task.id, "taskType": task.type, "payloadJson": _dumps(task.payload),
            "priority": task.priority, "metadataJson": _dumps(task.metadata), "status": status.value,
            "route": route.value, "createdAt": created, "updatedAt": created, "attempts": 0, "runCount": 0,
            schema.BY_STATUS.partition_key: f"{TASK_PREFIX}{status.value}",
            schema.INDEX_SORT_KEY: f"{created}#{task.id}",
        }
        if run_at is not None:
            attributes["runAt"] = iso(run_at)
        if cron is not None:
            attributes["cron"] = cron
            attributes["timezone"] = timezone or "UTC"
        else:  # a cron task lives until cancelled; a one-time task some time after it was due
            attributes["expiresAt"] = self.expires_at(run_at or now)
        if schedule_name is not None:
            attributes["scheduleName"] = schedule_name
        item = {**task_key(task.id), **{k: _ser(v) for k, v in attributes.items()}}
        if not self._put_new(item):
            raise TaskAlreadyExists(task.id)
        return record_from_item(item)

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Write a task item that must not exist yet; False when it does (nothing is overwritten)."""
        try:
            self.client.put_item(TableName=self.table_name, Item=item,
                                 ConditionExpression="attribute_not_exists(#pk)",
                                 ExpressionAttributeNames={"#pk": schema.PARTITION_KEY})
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def get(self, task_id: str) -> TaskRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key=task_key(task_id), ConsistentRead=True).get("Item")
        return record_from_item(item) if item else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        found: dict[str, TaskRecord] = {}
        ids = list(dict.fromkeys(task_ids))
        for start in range(0, len(ids), _BATCH_GET):
            request: dict[str, Any] = {self.table_name: {"Keys": [task_key(i) for i in ids[start:start + _BATCH_GET]]}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    record = record_from_item(item)
                    found[record.id] = record
                request = response.get("UnprocessedKeys") or {}
        return found

    def cancel(self, task_id: str, now: datetime) -> TaskRecord | None:
        """SCHEDULED/DELAYED -> CANCELLED; None when the task is not there or already past that point."""
        update = _Update().status(TaskStatus.CANCELLED).set(updatedAt=iso(now), endedAt=iso(now),
                                                            expiresAt=self.expires_at(now))
        return self._update(task_id, update, self._pending_condition(update))

    def fail_pending(self, task_id: str, error: TaskErrorInfo, now: datetime) -> TaskRecord | None:
        """SCHEDULED/DELAYED -> FAILED: the task never got on its way (queue or Scheduler refused it)."""
        update = _Update().status(TaskStatus.FAILED).set(updatedAt=iso(now), endedAt=iso(now),
                                                         errorJson=error_json(error), expiresAt=self.expires_at(now))
        return self._update(task_id, update, self._pending_condition(update))

    @staticmethod
    def _pending_condition(update: _Update) -> str:
        statuses = ", ".join(update.value(s.value) for s in sorted(PENDING_STATUSES))
        return f"#status IN ({statuses})"

    def list_tasks(self, status: TaskStatus | None = None, limit: int = 50) -> list[TaskRecord]:
        """The newest ``limit`` tasks (of one status), newest first: index queries, then one batch read."""
        statuses = [status] if status is not None else list(TaskStatus)
        keys: list[tuple[str, str]] = []
        for wanted in statuses:
            keys.extend(self._index_keys(wanted, limit))
        keys.sort(reverse=True)
        ids = [task_id for _, task_id in keys[:limit]]
        records = self.get_many(ids)
        return [records[i] for i in ids if i in records]

    def _index_keys(self, status: TaskStatus, limit: int) -> Iterator[tuple[str, str]]:
        index = schema.BY_STATUS
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "IndexName": index.name,
            "KeyConditionExpression": "#pk = :pk", "ExpressionAttributeNames": {"#pk": index.partition_key},
            "ExpressionAttributeValues": {":pk": {"S": f"{TASK_PREFIX}{status.value}"}},
            "ScanIndexForward": False, "Limit": limit,
        }
        seen = 0
        while seen < limit:
            response = self.client.query(**kwargs)
            for item in response.get("Items", []):
                seen += 1
                yield item[schema.INDEX_SORT_KEY]["S"], item[schema.PARTITION_KEY]["S"].removeprefix(TASK_PREFIX)
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- tasks: dispatcher side -------------------------------------------------------------------------------
    def claim(self, task_id: str, token: str, *, now: datetime, lease_until: datetime) -> TaskRecord | None:
        """A due one-time task -> DISPATCHED under ``token`` until ``lease_until``. Also takes over a DISPATCHED
        task whose lease ran out (its dispatcher died). None: not claimable (cancelled, done, held, missing)."""
        update = _Update().status(TaskStatus.DISPATCHED).set(
            claimToken=token, leaseUntil=epoch_ms(lease_until), dispatchedAt=iso(now), updatedAt=iso(now),
        ).add("attempts")
        pending = self._pending_condition(update)
        condition = (f"(({pending}) AND #route <> {update.value(Route.CRON.value)}) OR "
                     f"(#status = {update.value(TaskStatus.DISPATCHED.value)} AND "
                     f"leaseUntil < {update.value(epoch_ms(now))})")
        return self._update(task_id, update, condition)

    def adopt(self, task: Task, token: str, *, now: datetime, lease_until: datetime) -> TaskRecord | None:
        """A task message without a record (sent straight to the queue): create it DISPATCHED under ``token``."""
        created = iso(now)
        attributes: dict[str, Any] = {
            "taskId": task.id, "taskType": task.type, "payloadJson": _dumps(task.payload), "priority": task.priority,
            "metadataJson": _dumps(task.metadata), "status": TaskStatus.DISPATCHED.value, "route": Route.QUEUE.value,
            "createdAt": created, "updatedAt": created, "dispatchedAt": created, "runAt": created, "attempts": 1,
            "runCount": 0, "claimToken": token, "leaseUntil": epoch_ms(lease_until),
            "expiresAt": self.expires_at(now),
            schema.BY_STATUS.partition_key: f"{TASK_PREFIX}{TaskStatus.DISPATCHED.value}",
            schema.INDEX_SORT_KEY: f"{created}#{task.id}",
        }
        item = {**task_key(task.id), **{k: _ser(v) for k, v in attributes.items()}}
        if not self._put_new(item):
            return None
        return record_from_item(item)

    def started(self, task_id: str, token: str, *, execution_arn: str, target: str, worker: str | None,
                now: datetime) -> bool:
        """DISPATCHED -> RUNNING: its workflow execution started."""
        update = _Update().status(TaskStatus.RUNNING).set(executionArn=execution_arn, target=target, worker=worker,
                                                          updatedAt=iso(now)).remove("leaseUntil")
        condition = (f"claimToken = {update.value(token)} AND "
                     f"#status = {update.value(TaskStatus.DISPATCHED.value)}")
        return self._update(task_id, update, condition) is not None

    def finish(self, task_id: str, token: str, status: TaskStatus, *, now: datetime, target: str | None = None,
               worker: str | None = None, output: Any = None, error: TaskErrorInfo | None = None) -> bool:
        """DISPATCHED (or RUNNING) -> SUCCEEDED/FAILED, by the holder of ``token``."""
        update = _Update().status(status).set(
            updatedAt=iso(now), endedAt=iso(now), target=target, worker=worker, expiresAt=self.expires_at(now),
            outputJson=output_json(output) if status == TaskStatus.SUCCEEDED else None,
            errorJson=error_json(error) if error is not None else None,
        ).remove("claimToken", "leaseUntil")
        condition = (f"claimToken = {update.value(token)} AND #status IN "
                     f"({update.value(TaskStatus.DISPATCHED.value)}, {update.value(TaskStatus.RUNNING.value)})")
        return self._update(task_id, update, condition) is not None

    def release(self, task_id: str, token: str, *, now: datetime) -> bool:
        """Give a claim back at once (the dispatch failed for a retryable reason): the redelivered message may
        claim the task again without waiting for the lease to run out."""
        update = _Update().set(leaseUntil=0, updatedAt=iso(now))
        return self._update(task_id, update, f"claimToken = {update.value(token)}") is not None

    def claim_occurrence(self, task_id: str, occurrence: str, token: str, *, now: datetime,
                         lease_until: datetime) -> TaskRecord | None:
        """A cron task's occurrence: claimable once (or again after its dispatcher's lease ran out) while the task
        is SCHEDULED. None: cancelled, not a cron task, or this occurrence is done or held."""
        update = _Update().set(
            lastOccurrence=occurrence, lastRunAt=iso(now), lastRunStatus=TaskStatus.DISPATCHED.value,
            claimToken=token, leaseUntil=epoch_ms(lease_until), dispatchedAt=iso(now), updatedAt=iso(now),
            executionArn=None, outputJson=None, errorJson=None,
        ).add("runCount").add("attempts")
        occ = update.value(occurrence)
        expired = f"leaseUntil < {update.value(epoch_ms(now))}"
        condition = (
            f"#status = {update.value(TaskStatus.SCHEDULED.value)} AND #route = {update.value(Route.CRON.value)} AND "
            f"(attribute_not_exists(lastOccurrence) OR lastOccurrence <> {occ} OR "
            f"(lastRunStatus = {update.value(TaskStatus.DISPATCHED.value)} AND {expired}))"
        )
        return self._update(task_id, update, condition)

    def occurrence_started(self, task_id: str, occurrence: str, token: str, *, execution_arn: str, target: str,
                           worker: str | None, now: datetime) -> bool:
        update = _Update().set(lastRunStatus=TaskStatus.RUNNING.value, executionArn=execution_arn, target=target,
                               worker=worker, updatedAt=iso(now)).remove("leaseUntil")
        condition = f"lastOccurrence = {update.value(occurrence)} AND claimToken = {update.value(token)}"
        return self._update(task_id, update, condition) is not None

    def occurrence_finished(self, task_id: str, occurrence: str, token: str, status: TaskStatus, *, now: datetime,
                            target: str | None = None, worker: str | None = None, output: Any = None,
                            error: TaskErrorInfo | None = None) -> bool:
        update = _Update().set(
            lastRunStatus=status.value, updatedAt=iso(now), endedAt=iso(now), target=target, worker=worker,
            outputJson=output_json(output) if status == TaskStatus.SUCCEEDED else None,
            errorJson=error_json(error) if error is not None else None,
        ).remove("claimToken", "leaseUntil")
        condition = f"lastOccurrence = {update.value(occurrence)} AND claimToken = {update.value(token)}"
        return self._update(task_id, update, condition) is not None

    def workflow_finished(self, record: TaskRecord, status: TaskStatus, *, now: datetime, output: Any = None,
                          error: TaskErrorInfo | None = None) -> TaskRecord | None:
        """A workflow task's execution ended (seen by ``get_task_status``): RUNNING -> SUCCEEDED/FAILED, or the
        cron task's ``lastRunStatus`` likewise. Conditional on the same execution still being the current one."""
        update = _Update().set(
            updatedAt=iso(now), endedAt=iso(now),
            outputJson=output_json(output) if status == TaskStatus.SUCCEEDED else None,
            errorJson=error_json(error) if error is not None else None,
        ).remove("claimToken")
        running = update.value(TaskStatus.RUNNING.value)
        if record.route == Route.CRON:
            update.set(lastRunStatus=status.value)
            condition = f"lastRunStatus = {running}"
        else:
            update.status(status).set(expiresAt=self.expires_at(now))
            condition = f"#status = {running}"
        condition += f" AND executionArn = {update.value(record.executionArn or '')}"
        return self._update(record.id, update, condition)

    def _update(self, task_id: str, update: _Update, condition: str) -> TaskRecord | None:
        expression = update.expression()
        condition = f"attribute_exists(#pk) AND ({condition})"
        try:
            response = self.client.update_item(
                TableName=self.table_name, Key=task_key(task_id), UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=_used({**update.names, "#pk": schema.PARTITION_KEY}, expression, condition),
                ExpressionAttributeValues=update.values, ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return record_from_item(response["Attributes"])

    # -- workers --------------------------------------------------------------------------------------------
    def put_worker(self, worker_id: str, capabilities: Iterable[str], target: str, now: datetime) -> Worker:
        update = _Update().set(workerId=worker_id, capabilities=list(capabilities), target=target,
                               workerStatus="ACTIVE", updatedAt=iso(now))
        update.sets.append(f"registeredAt = if_not_exists(registeredAt, {update.value(iso(now))})")
        expression = update.expression()
        response = self.client.update_item(
            TableName=self.table_name, Key=worker_key(worker_id), UpdateExpression=expression,
            ExpressionAttributeNames=_used(update.names, expression),
            ExpressionAttributeValues=update.values, ReturnValues="ALL_NEW",
        )
        return worker_from_item(response["Attributes"])

    def delete_worker(self, worker_id: str) -> bool:
        response = self.client.delete_item(TableName=self.table_name, Key=worker_key(worker_id), ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def get_worker(self, worker_id: str) -> Worker | None:
        item = self.client.get_item(TableName=self.table_name, Key=worker_key(worker_id), ConsistentRead=True).get(
            "Item")
        return worker_from_item(item) if item else None

    def list_workers(self) -> list[Worker]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": {"S": WORKERS_PK}},
        }
        workers: list[Worker] = []
        while True:
            response = self.client.query(**kwargs)
            workers.extend(worker_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return workers
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def count_worker_task(self, worker_id: str, task_id: str, succeeded: bool | None, now: datetime) -> None:
        """One write per task routed through a registered worker: dispatched (+ succeeded/failed) counters."""
        update = _Update().set(lastTaskId=task_id, lastTaskAt=iso(now)).add("dispatched")
        if succeeded is not None:
            update.add("succeeded" if succeeded else "failed")
        expression = update.expression()
        try:
            self.client.update_item(
                TableName=self.table_name, Key=worker_key(worker_id), UpdateExpression=expression,
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames=_used({**update.names, "#pk": schema.PARTITION_KEY}, expression,
                                               "attribute_exists(#pk)"),
                ExpressionAttributeValues=update.values,
            )
        except ClientError as exc:
            if not _conditional_failed(exc):  # unregistered meanwhile: nothing to count
                raise


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def record_from_item(item: Mapping[str, Any]) -> TaskRecord:
    data = _plain(item)
    error = json.loads(data["errorJson"]) if data.get("errorJson") else None
    return TaskRecord(
        id=data["taskId"], type=data["taskType"], payload=json.loads(data.get("payloadJson") or "null"),
        priority=data.get("priority", 0), metadata=json.loads(data.get("metadataJson") or "{}"),
        status=TaskStatus(data["status"]), route=Route(data["route"]), runAt=_time(data.get("runAt")),
        cron=data.get("cron"), timezone=data.get("timezone"), scheduleName=data.get("scheduleName"),
        createdAt=_time(data["createdAt"]) or datetime.now(UTC),
        updatedAt=_time(data["updatedAt"]) or datetime.now(UTC),
        dispatchedAt=_time(data.get("dispatchedAt")), endedAt=_time(data.get("endedAt")),
        attempts=data.get("attempts", 0), target=data.get("target"), worker=data.get("worker"),
        executionArn=data.get("executionArn"),
        output=json.loads(data["outputJson"]) if data.get("outputJson") else None,
        error=TaskErrorInfo.model_validate(error) if error else None,
        runCount=data.get("runCount", 0), lastOccurrence=data.get("lastOccurrence"),
        lastRunAt=_time(data.get("lastRunAt")),
        lastRunStatus=TaskStatus(data["lastRunStatus"]) if data.get("lastRunStatus") else None,
    )


def worker_from_item(item: Mapping[str, Any]) -> Worker:
    data = _plain(item)
    return Worker(
        id=data["workerId"], capabilities=list(data.get("capabilities") or []), target=data["target"],
        registeredAt=_time(data.get("registeredAt")), updatedAt=_time(data.get("updatedAt")),
        dispatched=data.get("dispatched", 0), succeeded=data.get("succeeded", 0), failed=data.get("failed", 0),
        lastTaskId=data.get("lastTaskId"), lastTaskAt=_time(data.get("lastTaskAt")),
    )
