"""Dead-letter queues: see what failed and send it back where it came from (``coafi dlq ls|show|redrive``).

What lands in the app's dead-letter queue, and where a redrive sends it:

- a queue's redrive policy (the task queue after ``maxReceiveCount``), recognised by the system attribute
  ``DeadLetterQueueSourceArn``: back to that queue, same body and message attributes;
- an EventBridge rule target (message attributes ``RULE_ARN`` and ``TARGET_ARN``): to the target (a state
  machine: ``StartExecution`` with the event as input);
- an EventBridge Scheduler target (``SCHEDULE_ARN`` and ``TARGET_ARN``): to the target, with the schedule's input;
- an asynchronous Lambda invocation (on-failure destination; body ``{"requestContext": {"functionArn"},
  "requestPayload"}``): the function, invoked asynchronously with the same payload.

**No message is lost**: a message is deleted from the dead-letter queue only after its re-send was accepted; when
the re-send fails, the message is made visible again at once and the failure reported. A message whose origin
cannot be told is left alone unless ``to`` names a queue to send it to.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from coafi import aws

OUTPUT_DEAD_LETTER_URL = "DeadLetterQueueUrl"
#: Seconds a message received by ``show`` or ``redrive`` stays hidden from others while it is handled.
HANDLING_VISIBILITY_SECONDS = 60
SourceKind = Literal["queue", "eventbridge", "scheduler", "lambda", "unknown"]
_SYSTEM_ATTRIBUTES = ["All"]


class DeadLetterError(Exception):
    """A dead-letter operation cannot be done as asked (the message says why and what to do)."""


class DeadLetterQueue(BaseModel):
    """One dead-letter queue and what it holds now (SQS' approximate counts)."""

    url: str
    arn: str
    name: str
    messages: int = Field(description="ApproximateNumberOfMessages (visible)")
    inFlight: int = Field(description="ApproximateNumberOfMessagesNotVisible (being handled)")
    retentionSeconds: int | None = None
    sources: list[str] = Field(default_factory=list, description="queues whose redrive policy points here")


class DeadLetter(BaseModel):
    """One dead-lettered message, with where it came from and where a redrive sends it."""

    messageId: str
    body: str
    source: SourceKind
    target: str | None = Field(None, description="ARN a redrive delivers to (None: unknown origin)")
    error: str | None = Field(None, description="why it was dead-lettered, when the sender said")
    receiveCount: int = 0
    sentAt: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict, description="message attributes (string values)")
    receiptHandle: str = Field("", exclude=True)
    rawAttributes: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def payload(self) -> Any:
        """The body as JSON when it is JSON, else the text."""
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body


class RedriveOutcome(BaseModel):
    messageId: str
    source: SourceKind
    target: str | None
    redriven: bool
    detail: str = ""


class RedriveReport(BaseModel):
    queue: str
    outcomes: list[RedriveOutcome] = Field(default_factory=list)

    @property
    def redriven(self) -> int:
        return sum(1 for o in self.outcomes if o.redriven)

    @property
    def failed(self) -> list[RedriveOutcome]:
        return [o for o in self.outcomes if not o.redriven]


def classify(message: dict[str, Any]) -> DeadLetter:
    """Where a received SQS message came from (see the module docstring)."""
    attrs = {k: str(v.get("StringValue", "")) for k, v in (message.get("MessageAttributes") or {}).items()
             if "StringValue" in v}
    system = message.get("Attributes") or {}
    body = str(message.get("Body", ""))
    source: SourceKind = "unknown"
    target: str | None = None
    error: str | None = None
    if system.get("DeadLetterQueueSourceArn"):
        source, target = "queue", str(system["DeadLetterQueueSourceArn"])
        error = f"received {system.get('ApproximateReceiveCount', '?')} times without success"
    elif "TARGET_ARN" in attrs and ("SCHEDULE_ARN" in attrs or "RULE_ARN" in attrs):
        source = "scheduler" if "SCHEDULE_ARN" in attrs else "eventbridge"
        target = attrs["TARGET_ARN"]
        error = ": ".join(x for x in (attrs.get("ERROR_CODE"), attrs.get("ERROR_MESSAGE")) if x) or None
    else:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        context = parsed.get("requestContext") if isinstance(parsed, dict) else None
        if isinstance(context, dict) and context.get("functionArn") and "requestPayload" in parsed:
            source, target = "lambda", str(context["functionArn"])
            response = parsed.get("responsePayload")
            condition = context.get("condition", "")
            if isinstance(response, dict) and response.get("errorType"):
                error = f"{response['errorType']}: {response.get('errorMessage', '')}"
            else:
                error = str(condition) or None
    return DeadLetter(messageId=str(message["MessageId"]), body=body, source=source, target=target, error=error,
                      receiveCount=int(system.get("ApproximateReceiveCount", 0) or 0),
                      sentAt=system.get("SentTimestamp"), attributes=attrs,
                      receiptHandle=str(message.get("ReceiptHandle", "")),
                      rawAttributes=dict(message.get("MessageAttributes") or {}))


def queue_url_of(arn_or_url: str) -> str:
    if arn_or_url.startswith(("http://", "https://")):
        return arn_or_url
    parts = arn_or_url.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise DeadLetterError(f"{arn_or_url!r} is neither a queue URL nor an SQS queue ARN")
    return str(aws.client("sqs").get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"])


class DeadLetterQueues:
    """The app's dead-letter queue(s); ``queue`` arguments take a URL or an ARN (default: the first queue)."""

    def __init__(self, queues: Sequence[str]) -> None:
        if not queues:
            raise DeadLetterError("no dead-letter queue given")
        self.queues = [queue_url_of(q) for q in queues]

    @classmethod
    def from_stack(cls, stack_name: str | None = None) -> DeadLetterQueues:
        """The dead-letter queue of the deployed stack (output ``DeadLetterQueueUrl``, else ``DeadLetterQueueArn``)."""
        from coafi.deploy import DEFAULT_STACK
        from coafi.tasks.settings import OUTPUT_DEAD_LETTER_ARN, _raw_outputs

        name = stack_name or os.environ.get("COAFI_STACK_NAME") or DEFAULT_STACK
        try:
            outputs = _raw_outputs(name)
        except ClientError as exc:
            raise DeadLetterError(f"stack {name} is not deployed here ({exc}); run `coafi deploy --local` or pass "
                                  "--queue") from None
        queue = outputs.get(OUTPUT_DEAD_LETTER_URL) or outputs.get(OUTPUT_DEAD_LETTER_ARN)
        if not queue:
            raise DeadLetterError(f"stack {name} has no output {OUTPUT_DEAD_LETTER_URL}; redeploy it or pass --queue")
        return cls([queue])

    def _url(self, queue: str | None) -> str:
        return queue_url_of(queue) if queue else self.queues[0]

    # -- ls -------------------------------------------------------------------------------------------------------
    def list_queues(self) -> list[DeadLetterQueue]:
        sqs = aws.client("sqs")
        result = []
        for url in self.queues:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "MessageRetentionPeriod"])["Attributes"]
            sources = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", [])
            result.append(DeadLetterQueue(
                url=url, arn=attributes["QueueArn"], name=url.rstrip("/").rsplit("/", 1)[-1],
                messages=int(attributes.get("ApproximateNumberOfMessages", 0)),
                inFlight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                retentionSeconds=int(attributes["MessageRetentionPeriod"]) if "MessageRetentionPeriod" in attributes
                else None,
                sources=sorted(sources)))
        return result

    # -- show -----------------------------------------------------------------------------------------------------
    def _receive(self, url: str, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` messages, each received once and hidden while this call holds it."""
        sqs = aws.client("sqs")
        seen: dict[str, DeadLetter] = {}
        while len(seen) < limit:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)), WaitTimeSeconds=0,
                VisibilityTimeout=HANDLING_VISIBILITY_SECONDS, MessageAttributeNames=["All"],
                MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                letter = classify(message)
                if letter.messageId in seen:  # received again: give the newer handle back too
                    self._release(url, [letter])
                    continue
                seen[letter.messageId] = letter
        return list(seen.values())

    @staticmethod
    def _release(url: str, letters: Iterable[DeadLetter]) -> None:
        sqs = aws.client("sqs")
        for letter in letters:
            with contextlib.suppress(ClientError):  # else the visibility timeout gives it back anyway
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=letter.receiptHandle, VisibilityTimeout=0)

    def show(self, queue: str | None = None, *, limit: int = 10) -> list[DeadLetter]:
        """Look at up to ``limit`` messages without removing them (they are visible again right after)."""
        url = self._url(queue)
        letters = self._receive(url, limit)
        self._release(url, letters)
        return letters

    # -- redrive --------------------------------------------------------------------------------------------------
    def redrive(self, queue: str | None = None, *, limit: int = 100, message_ids: Iterable[str] | None = None,
                to: str | None = None, dry_run: bool = False) -> RedriveReport:
        """Send messages back where they came from (``to``: a queue for messages of unknown origin, or for all when
        given). Each message is deleted only after its re-send was accepted."""
        url = self._url(queue)
        wanted = set(message_ids or [])
        report = RedriveReport(queue=url)
        letters = self._receive(url, limit if not wanted else max(limit, 1000))
        keep = [x for x in letters if wanted and x.messageId not in wanted]
        self._release(url, keep)
        for letter in (x for x in letters if not wanted or x.messageId in wanted):
            target = to or letter.target
            if target is None:
                self._release(url, [letter])
                report.outcomes.append(RedriveOutcome(
                    messageId=letter.messageId, source=letter.source, target=None, redriven=False,
                    detail="origin unknown (not from a queue, rule, schedule or async invocation): pass --to QUEUE"))
                continue
            if dry_run:
                self._release(url, [letter])
                report.outcomes.append(RedriveOutcome(messageId=letter.messageId, source=letter.source,
                                                      target=target, redriven=False, detail="dry run"))
                continue
            try:
                detail = deliver(letter, target, explicit=to is not None)
            except (ClientError, DeadLetterError, ValueError) as exc:
                self._release(url, [letter])
                report.outcomes.append(RedriveOutcome(messageId=letter.messageId, source=letter.source,
                                                      target=target, redriven=False, detail=f"kept: {exc}"))
                continue
            aws.client("sqs").delete_message(QueueUrl=url, ReceiptHandle=letter.receiptHandle)
            report.outcomes.append(RedriveOutcome(messageId=letter.messageId, source=letter.source, target=target,
                                                  redriven=True, detail=detail))
        if wanted - {x.messageId for x in letters}:
            missing = sorted(wanted - {x.messageId for x in letters})
            report.outcomes.extend(RedriveOutcome(messageId=m, source="unknown", target=None, redriven=False,
                                                  detail="not in the queue (or held by another reader)")
                                   for m in missing)
        return report


def _user_attributes(letter: DeadLetter) -> dict[str, Any]:
    """Message attributes to carry over to a queue (not the ones a dead-lettering service added)."""
    added = {"ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN", "TARGET_ARN", "SCHEDULE_ARN", "EXECUTION_ID",
             "RETRY_ATTEMPTS", "GROUP_ID", "RequestID", "ErrorCode", "ErrorMessage"}
    kept: dict[str, Any] = {}
    for name, value in letter.rawAttributes.items():
        if name in added:
            continue
        entry = {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        if entry.get("DataType"):
            kept[name] = entry
    return kept


def deliver(letter: DeadLetter, target: str, *, explicit: bool = False) -> str:
    """Re-send one dead letter to ``target`` (an ARN, or with ``explicit`` also a queue URL); what was done."""
    if target.startswith(("http://", "https://")) or target.split(":")[2:3] == ["sqs"]:
        url = queue_url_of(target)
        body = letter.body
        if letter.source == "lambda" and not explicit:
            raise DeadLetterError("an asynchronous invocation record is redriven to its function, not a queue")
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
        attributes = _user_attributes(letter)
        if attributes:
            kwargs["MessageAttributes"] = attributes
        if url.endswith(".fifo"):
            kwargs["MessageGroupId"] = letter.attributes.get("GROUP_ID") or "redrive"
            kwargs["MessageDeduplicationId"] = letter.messageId
        sent = aws.client("sqs").send_message(**kwargs)
        return f"sent to {url} as {sent['MessageId']}"
    service = target.split(":")[2] if target.count(":") >= 5 else ""
    if service == "states":
        started = aws.client("stepfunctions").start_execution(stateMachineArn=target, input=letter.body or "{}")
        return f"started {started['executionArn']}"
    if service == "lambda":
        payload: Any = letter.payload()
        if letter.source == "lambda" and isinstance(payload, dict):
            payload = payload.get("requestPayload")
        function = target.split(":$LATEST")[0]
        response = aws.client("lambda").invoke(FunctionName=function, InvocationType="Event",
                                              Payload=json.dumps(payload).encode())
        return f"invoked {function} asynchronously (status {response.get('StatusCode')})"
    raise DeadLetterError(f"cannot redrive to {target!r}: only queues, state machines and functions are supported; "
                          "pass --to QUEUE to move it to a queue")
