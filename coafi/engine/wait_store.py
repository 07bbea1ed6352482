"""The DynamoDB layer of the waiting steps (docs/waits.md): task tokens stored against (execution, step), and
one signal channel per (execution, signal name). Items live in the execution's partition of the state table, so
they expire with it (TTL) and ``delete_state`` removes them.

| item | SK | holds |
|---|---|---|
| wait record | ``WAIT#<stepId>`` | the step's current task token, kind, status (WAITING, COMPLETED, FAILED, ENDED) |
| signal channel | ``SIGCH#<name>`` | ``version``, ``nextSeq``, pending signals' numbers, waiting steps (in order) |
| buffered signal | ``SIGQ#<name>#<seq>`` | one signal's payload (S3 pointer when large), status PENDING / DELIVERED |
| signal id | ``SIGID#<name>#<signalId>`` | marks a signal id as received (a resent signal is accepted once) |

Every change of a channel is a write conditional on the version read (creation: ``attribute_not_exists``), so
a signal arriving and a step starting to wait, in either order or at the same moment, are serialised: whoever
writes second sees the other's entry, and ``take`` hands each (signal, waiter) pair to exactly one caller.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coafi.state.codec import Attr, dumps, epoch_seconds, n, now_iso, plain, s
from coafi.state.errors import ConcurrentUpdateError
from coafi.state.store import BACKSTOP_DAYS, StateStore, execution_pk

WAIT_PREFIX = "WAIT#"
CHANNEL_PREFIX = "SIGCH#"
SIGNAL_PREFIX = "SIGQ#"
SIGNAL_ID_PREFIX = "SIGID#"
MAX_CHANNEL_ATTEMPTS = 40
_BACKOFF_BASE_S = 0.005
_BACKOFF_CAP_S = 0.2

WaitKind = Literal["callback", "signal"]
WaitStatus = Literal["WAITING", "COMPLETED", "FAILED", "ENDED"]


class WaitRecord(BaseModel):
    """A callback or signal step waiting (or done waiting): its current task token, by execution and step."""

    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True)

    executionId: str
    workflowId: str = ""
    stepId: str
    stepName: str = ""
    stepType: WaitKind
    signal: str | None = None
    taskToken: str
    status: WaitStatus = "WAITING"
    attempt: int = 0
    issuedAt: str = ""
    endedAt: str | None = None
    timeoutSeconds: int | None = None


class Waiter(BaseModel):
    model_config = ConfigDict(defer_build=True)

    stepId: str
    taskToken: str


class Channel(BaseModel):
    """One signal name of one execution: signals not yet delivered and steps waiting, each in arrival order."""

    model_config = ConfigDict(defer_build=True)

    version: int = 0
    nextSeq: int = 0
    pending: list[int] = Field(default_factory=list)
    waiters: list[Waiter] = Field(default_factory=list)


class Delivery(BaseModel):
    """A buffered signal paired with the step that receives it (``WaitStore.take``)."""

    model_config = ConfigDict(defer_build=True)

    executionId: str
    signal: str
    seq: int
    signalId: str | None = None
    waiter: Waiter
    payload: Any = None


class DuplicateSignal(Exception):
    """A signal id that this execution's channel has already received."""

    def __init__(self, seq: int | None) -> None:
        super().__init__(f"signal already received (number {seq})")
        self.seq = seq


def _signal_sort_key(name: str, seq: int) -> str:
    return f"{SIGNAL_PREFIX}{name}#{seq:010d}"


class WaitStore:
    """Wait records and signal channels in the state table of ``store`` (same client, payload bucket, TTL)."""

    def __init__(self, store: StateStore) -> None:
        self.state = store

    @property
    def client(self) -> Any:
        return self.state.client

    @property
    def table(self) -> str:
        return self.state.table_name

    def _expires(self) -> int:
        return epoch_seconds(datetime.now(UTC)) + BACKSTOP_DAYS * 86_400 + self.state.retention_seconds

    def _key(self, execution_id: str, sort_key: str) -> dict[str, Attr]:
        return {"PK": s(execution_pk(execution_id)), "SK": s(sort_key)}

    # -- wait records -----------------------------------------------------------------------------
    def put_wait(self, record: WaitRecord) -> None:
        """Store the step's token (a new attempt of the step replaces the previous one's)."""
        item: dict[str, Attr] = {**self._key(record.executionId, WAIT_PREFIX + record.stepId),
                                 "recordJson": s(dumps(record.model_dump())), "status": s(record.status),
                                 "taskToken": s(record.taskToken), "expiresAt": n(self._expires())}
        self.client.put_item(TableName=self.table, Item=item)

    def get_wait(self, execution_id: str, step_id: str) -> WaitRecord | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(execution_id, WAIT_PREFIX + step_id),
                                    ConsistentRead=True).get("Item")
        return self._wait_from_item(item) if item else None

    def list_waits(self, execution_id: str) -> list[WaitRecord]:
        """The execution's callback and signal steps that have started waiting, by step id."""
        return [self._wait_from_item(item) for item in self._query(execution_id, WAIT_PREFIX)]

    def end_wait(self, record: WaitRecord, status: WaitStatus, *, expected: WaitStatus = "WAITING") -> bool:
        """Mark the wait of ``record``'s token ended with ``status``; False when it is no longer ``expected`` with
        that token (someone else completed it, or the step started again with a new token)."""
        ended = record.model_copy(update={"status": status, "endedAt": None if status == "WAITING" else now_iso()})
        try:
            self.client.update_item(
                TableName=self.table, Key=self._key(record.executionId, WAIT_PREFIX + record.stepId),
                UpdateExpression="SET #status = :status, recordJson = :record",
                ConditionExpression="taskToken = :token AND #status = :waiting",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": s(status), ":record": s(dumps(ended.model_dump())),
                                           ":token": s(record.taskToken), ":waiting": s(expected)},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _wait_from_item(self, item: dict[str, Attr]) -> WaitRecord:
        record = WaitRecord.model_validate(json.loads(item["recordJson"]["S"]))
        return record.model_copy(update={"status": item["status"]["S"]})

    # -- signal channels --------------------------------------------------------------------------
    def get_channel(self, execution_id: str, name: str) -> Channel:
        item = self.client.get_item(TableName=self.table, Key=self._key(execution_id, CHANNEL_PREFIX + name),
                                    ConsistentRead=True).get("Item")
        if not item:
            return Channel()
        values = plain(item)
        return Channel(version=int(values["version"]), nextSeq=int(values["nextSeq"]),
                       pending=json.loads(values["pendingJson"]),
                       waiters=[Waiter.model_validate(w) for w in json.loads(values["waitersJson"])])

    def _channel_put(self, execution_id: str, name: str, old: Channel, new: Channel) -> dict[str, Any]:
        item: dict[str, Attr] = {
            **self._key(execution_id, CHANNEL_PREFIX + name), "executionId": s(execution_id), "signal": s(name),
            "version": n(old.version + 1), "nextSeq": n(new.nextSeq),
            "pendingJson": s(json.dumps(new.pending)),
            "waitersJson": s(json.dumps([w.model_dump() for w in new.waiters])),
            "expiresAt": n(self._expires()),
        }
        put: dict[str, Any] = {"TableName": self.table, "Item": item}
        if old.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(SK)"
        else:
            put["ConditionExpression"] = "version = :expected"
            put["ExpressionAttributeValues"] = {":expected": n(old.version)}
        return put

    def _change_channel(self, execution_id: str, name: str, change: Callable[[Channel], Channel | None],
                        extra: Callable[[Channel], list[dict[str, Any]]] | None = None) -> tuple[Channel, Channel]:
        """Apply ``change`` to the channel with a conditional write, re-reading and re-applying it after a lost race.
        ``change`` returning None writes nothing. ``extra``: more puts for the same transaction (built from the
        channel read). Returns (channel read, channel written)."""
        for attempt in range(1, MAX_CHANNEL_ATTEMPTS + 1):
            old = self.get_channel(execution_id, name)
            new = change(old.model_copy(deep=True))
            if new is None:
                return old, old
            put = self._channel_put(execution_id, name, old, new)
            more = extra(old) if extra else []
            if self._write(put, more):
                return old, new.model_copy(update={"version": old.version + 1})
            time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** attempt)))
        raise ConcurrentUpdateError(execution_id, 0, None, attempts=MAX_CHANNEL_ATTEMPTS)

    def _write(self, put: dict[str, Any], more: list[dict[str, Any]]) -> bool:
        """One conditional channel write (alone, or in a transaction with ``more``); False when it lost a race."""
        if not more:
            try:
                self.client.put_item(**put)
            except self.client.exceptions.ConditionalCheckFailedException:
                return False
            return True
        try:
            self.client.transact_write_items(TransactItems=[{"Put": put}, *({"Put": p} for p in more)])
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            codes = [r.get("Code") for r in reasons]
            if len(codes) > 2 and codes[2] == "ConditionalCheckFailed":  # the signal id is taken
                raise DuplicateSignal(None) from None
            if not {"ConditionalCheckFailed", "TransactionConflict"} & set(codes):
                raise
            return False
        return True

    def enqueue(self, execution_id: str, name: str, payload: Any, *, signal_id: str | None = None) -> int:
        """Buffer a signal (durably, before any delivery is tried); returns its number in the channel.
        ``signal_id``: a signal with an id this channel has received before raises ``DuplicateSignal``."""
        payload_json = dumps(payload)

        def append(channel: Channel) -> Channel:
            channel.pending.append(channel.nextSeq)
            channel.nextSeq += 1
            return channel

        def signal_items(channel: Channel) -> list[dict[str, Any]]:
            seq = channel.nextSeq
            item: dict[str, Attr] = {
                **self._key(execution_id, _signal_sort_key(name, seq)), "executionId": s(execution_id),
                "signal": s(name), "seq": n(seq), "sentAt": s(now_iso()), "status": s("PENDING"),
                "payloadJson": s(payload_json), "expiresAt": n(self._expires()),
            }
            if signal_id:
                item["signalId"] = s(signal_id)
            self.state.payloads.fit(execution_id, item, ["payloadJson"])
            puts: list[dict[str, Any]] = [{"TableName": self.table, "Item": item,
                                           "ConditionExpression": "attribute_not_exists(SK)"}]
            if signal_id:
                puts.append({"TableName": self.table, "ConditionExpression": "attribute_not_exists(SK)", "Item": {
                    **self._key(execution_id, f"{SIGNAL_ID_PREFIX}{name}#{signal_id}"), "seq": n(seq),
                    "expiresAt": n(self._expires())}})
            return puts

        try:
            old, _ = self._change_channel(execution_id, name, append, signal_items)
        except DuplicateSignal:
            raise DuplicateSignal(self._seq_of_signal_id(execution_id, name, signal_id or "")) from None
        return old.nextSeq

    def _seq_of_signal_id(self, execution_id: str, name: str, signal_id: str) -> int | None:
        item = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key=self._key(execution_id, f"{SIGNAL_ID_PREFIX}{name}#{signal_id}")).get("Item")
        return int(item["seq"]["N"]) if item else None

    def add_waiter(self, execution_id: str, name: str, waiter: Waiter) -> None:
        """Register a step waiting for ``name`` (replacing an earlier token of the same step: a retried step's
        previous token can never be completed again)."""

        def append(channel: Channel) -> Channel | None:
            if any(w.taskToken == waiter.taskToken for w in channel.waiters):
                return None  # a repeated registration of the same token
            channel.waiters = [w for w in channel.waiters if w.stepId != waiter.stepId] + [waiter]
            return channel

        self._change_channel(execution_id, name, append)

    def take(self, execution_id: str, name: str) -> Delivery | None:
        """Pair the oldest pending signal with the longest-waiting step, removing both from the channel (one
        conditional write: concurrent callers never take the same pair); None when either side is empty."""

        def pop(channel: Channel) -> Channel | None:
            if not channel.pending or not channel.waiters:
                return None
            channel.pending = channel.pending[1:]
            channel.waiters = channel.waiters[1:]
            return channel

        old, new = self._change_channel(execution_id, name, pop)
        if new is old:
            return None
        seq, waiter = old.pending[0], old.waiters[0]
        item = self.client.get_item(TableName=self.table, Key=self._key(execution_id, _signal_sort_key(name, seq)),
                                    ConsistentRead=True).get("Item")
        if item is None:  # written in the same transaction as its number: only a deleted execution lacks it
            raise LookupError(f"signal {name} #{seq} of '{execution_id}' is gone (was the execution deleted?)")
        values = plain(item)
        return Delivery(executionId=execution_id, signal=name, seq=seq, signalId=values.get("signalId"),
                        waiter=waiter, payload=self.state.payloads.load(item.get("payloadJson")))

    def put_back(self, execution_id: str, name: str, seq: int, waiter: Waiter | None = None) -> None:
        """A taken signal that was not delivered goes back into the queue, in its place by number; ``waiter``
        (whose token is still good: the delivery failed on the way) goes back to the head of the waiters."""

        def restore(channel: Channel) -> Channel:
            channel.pending = sorted({*channel.pending, seq})
            if waiter is not None and not any(w.stepId == waiter.stepId for w in channel.waiters):
                channel.waiters = [waiter, *channel.waiters]
            return channel

        self._change_channel(execution_id, name, restore)

    def mark_delivered(self, delivery: Delivery) -> None:
        self.client.update_item(
            TableName=self.table, Key=self._key(delivery.executionId, _signal_sort_key(delivery.signal, delivery.seq)),
            UpdateExpression="SET #status = :delivered, deliveredTo = :step, deliveredAt = :at",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":delivered": s("DELIVERED"), ":step": s(delivery.waiter.stepId),
                                       ":at": s(now_iso())},
        )

    def list_signals(self, execution_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """The signals an execution received (``{signal, seq, status, sentAt, deliveredTo, payload}``), by name
        and number."""
        prefix = SIGNAL_PREFIX + (f"{name}#" if name else "")
        found = []
        for item in self._query(execution_id, prefix):
            values = plain(item)
            found.append({"signal": values["signal"], "seq": int(values["seq"]), "status": values["status"],
                          "sentAt": values["sentAt"], "signalId": values.get("signalId"),
                          "deliveredTo": values.get("deliveredTo"), "deliveredAt": values.get("deliveredAt"),
                          "payload": self.state.payloads.load(item.get("payloadJson"))})
        return found

    def _query(self, execution_id: str, prefix: str) -> list[dict[str, Attr]]:
        items: list[dict[str, Attr]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": s(execution_pk(execution_id)), ":prefix": s(prefix)},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
