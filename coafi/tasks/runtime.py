"""The dispatcher as an SQS consumer Lambda: Powertools batch processing with partial batch failures around
Powertools idempotency around ``TaskDispatcher.dispatch_message``.

- A record that fails (a poison message, a throttled action) is reported in ``batchItemFailures``: SQS
  redelivers it alone, its neighbours are deleted; after the queue's maxReceiveCount it lands in the DLQ.
- The records of a batch run concurrently (``COAFI_DISPATCH_CONCURRENCY`` threads), higher priority first.
- Idempotency: DynamoDB records in the state table under ``IDEMPOTENCY#tasks`` (expiring through the table's
  TTL attribute), keyed by ``[taskId, occurrence]``: a redelivered message returns the first result instead of
  running its task again; one redelivered while the first is still in progress fails and is retried later.
  The task record's conditional claim is the second line of defence (it also stops duplicates sent as
  different messages, and the in-progress record expires with the invocation that held it).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from pydantic import ValidationError

from coafi import aws
from coafi.errors import validation_problems
from coafi.state import schema
from coafi.tasks.dispatcher import DEFAULT_LEASE_SECONDS, TaskDispatcher
from coafi.tasks.errors import InvalidTaskMessage
from coafi.tasks.models import TaskMessage
from coafi.tasks.settings import DispatcherSettings
from coafi.tasks.store import IDEMPOTENCY_PK

#: Longer than SQS keeps a message by default (4 days): any redelivery finds the record.
IDEMPOTENCY_SECONDS = 4 * 24 * 3600 + 3600
IDEMPOTENCY_KEY = "[taskId, occurrence]"
#: Seconds kept back from the invocation's remaining time when leasing a task.
LEASE_MARGIN_SECONDS = 2.0


def parse_message(body: str) -> TaskMessage:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidTaskMessage(f"not a COAFI task message: the body is not JSON ({exc})") from None
    try:
        return TaskMessage.model_validate(data)
    except ValidationError as exc:  # the fields at fault, not their values (payloads may be large or private)
        raise InvalidTaskMessage(f"not a COAFI task message: {validation_problems(exc, root='body')}") from None


def _priority(record: dict[str, Any]) -> int:
    try:
        task = json.loads(record.get("body") or "{}").get("task") or {}
        return int(task.get("priority", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


class ConcurrentBatchProcessor(BatchProcessor):
    """Powertools' ``BatchProcessor`` processing a batch's records on a thread pool, higher priority first.
    Success/failure bookkeeping is Powertools' own (list appends, safe across threads)."""

    def __init__(self, max_workers: int, logger: logging.Logger | None = None) -> None:
        super().__init__(EventType.SQS, raise_on_entire_batch_failure=False, logger=logger)
        self.max_workers = max_workers

    def process(self) -> list[tuple[Any, ...]]:
        records = sorted(self.records, key=_priority, reverse=True)
        if self.max_workers == 1 or len(records) <= 1:
            return [self._process_record(r) for r in records]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(records))) as pool:
            return list(pool.map(self._process_record, records))


class DispatcherRuntime:
    """One per Lambda execution environment (built on the first invocation)."""

    def __init__(self, dispatcher: TaskDispatcher, *, concurrency: int = 5, logger: Any = None) -> None:
        self.dispatcher = dispatcher
        self.concurrency = concurrency
        self.logger = logger
        self.lease_seconds = DEFAULT_LEASE_SECONDS
        self.persistence = DynamoDBPersistenceLayer(
            table_name=dispatcher.store.table_name, key_attr=schema.PARTITION_KEY, sort_key_attr=schema.SORT_KEY,
            static_pk_value=IDEMPOTENCY_PK, expiry_attr=schema.TTL_ATTRIBUTE, boto3_client=aws.client("dynamodb"),
        )
        self.config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, raise_on_no_idempotency_key=True,
                                        expires_after_seconds=IDEMPOTENCY_SECONDS)
        self._dispatch_once = idempotent_function(
            data_keyword_argument="message", persistence_store=self.persistence, config=self.config,
            key_prefix="dispatch",
        )(self._dispatch)

    @classmethod
    def from_env(cls, logger: Any = None) -> DispatcherRuntime:
        settings = DispatcherSettings.from_env()
        return cls(TaskDispatcher(settings), concurrency=settings.concurrency, logger=logger)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda handler's body: ``{"batchItemFailures": [...]}`` for the records to redeliver."""
        if context is not None:
            self.config.register_lambda_context(context)
            remaining = float(context.get_remaining_time_in_millis()) / 1000.0
            self.lease_seconds = max(remaining - LEASE_MARGIN_SECONDS, 1.0)
        processor = ConcurrentBatchProcessor(self.concurrency, logger=self.logger)
        return dict(process_partial_response(event=event, record_handler=self.handle_record, processor=processor,
                                             context=context))

    def handle_record(self, record: SQSRecord) -> dict[str, Any]:
        message = parse_message(record.body)
        result: dict[str, Any] = self._dispatch_once(message=message.model_dump(mode="json"))
        if self.logger is not None:
            self.logger.info("task dispatched", extra={"message_id": record.message_id, **result})
        return result

    def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        result = self.dispatcher.dispatch_message(TaskMessage.model_validate(message),
                                                  lease_seconds=self.lease_seconds)
        from coafi import telemetry  # runs once per task (a redelivery replays the stored result, uncounted)

        telemetry.increment_counter("TaskDispatched", {"outcome": result.outcome})
        return result.model_dump(mode="json", exclude_none=True)
