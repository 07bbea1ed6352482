"""Circuit breaker per downstream dependency, shared by every execution through the state table.

    from coafi.resilience.circuit import CircuitBreaker

    payments = CircuitBreaker("payments-api", failure_threshold=5, window_seconds=60, open_seconds=30)

    @action
    def handler(event: StepEvent) -> dict:
        with payments:                 # raises CircuitOpen (a transient error) at once while the circuit is open
            return call_payments(event.input)

``@payments`` decorates a function the same way. States:

- **CLOSED**: calls go through; failures are counted in a window of ``window_seconds`` (started by the first
  failure). The ``failure_threshold``-th failure within the window opens the circuit (one conditional write:
  exactly one of several concurrent failures opens it, and only that one emits the ``CircuitOpened`` metric).
- **OPEN**: every call fails fast with ``CircuitOpen`` without calling the dependency, until ``open_seconds`` have
  passed since it opened.
- **HALF_OPEN**: after that, the first caller takes the probe (a conditional write: one caller only, for at most
  ``probe_seconds``); other callers still fail fast. The probe's success closes the circuit; its failure opens it
  again for ``open_seconds``. A probe that never reports (its Lambda died) is taken over after ``probe_seconds``.

Only failures that say something about the dependency count: by default transient and system errors, not
permanent ones (a validation error is the caller's fault). ``CircuitOpen`` itself never counts.

Item: ``PK = CIRCUIT#<name>``, ``SK = CIRCUIT`` with ``state``, ``failures``, ``windowStart``, ``openedAt``,
``openUntil``, ``probeUntil`` (epoch milliseconds), ``updatedAt``. A success while CLOSED writes nothing: the
breaker costs one consistent GetItem per call, plus writes on failures and transitions.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from coafi.resilience.classification import ErrorCategory, classify
from coafi.resilience.errors import CircuitOpen

PREFIX = "CIRCUIT#"
SORT_KEY = "CIRCUIT"
#: The partition keys circuit breakers use (for an IAM dynamodb:LeadingKeys condition).
LEADING_KEYS = (f"{PREFIX}*",)
_MAX_RACES = 8

P = ParamSpec("P")
R = TypeVar("R")


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class CircuitStatus:
    """What the table says about a circuit (times in epoch milliseconds)."""

    name: str
    state: CircuitState
    failures: int = 0
    window_start: int = 0
    opened_at: int = 0
    open_until: int = 0
    probe_until: int = 0


def _counts_by_default(exc: BaseException) -> bool:
    return not isinstance(exc, CircuitOpen) and classify(exc) != ErrorCategory.PERMANENT


def _now_ms() -> int:
    return int(time.time() * 1000)


class CircuitBreaker:
    """A circuit around one dependency (``name``); every breaker with the same name shares the circuit.

    ``table_name``: the state table (default: the function's ``COAFI_TABLE_NAME``); ``counts``: which exceptions
    count as failures of the dependency; ``clock``: epoch milliseconds (tests).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        window_seconds: float = 60,
        open_seconds: float = 30,
        probe_seconds: float = 30,
        table_name: str | None = None,
        counts: Callable[[BaseException], bool] = _counts_by_default,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        if not name or len(name) > 200:
            raise ValueError(f"a circuit breaker needs a dependency name of 1 to 200 characters, got {name!r}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if window_seconds <= 0 or open_seconds <= 0 or probe_seconds <= 0:
            raise ValueError("window_seconds, open_seconds and probe_seconds must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.window_ms = int(window_seconds * 1000)
        self.open_ms = int(open_seconds * 1000)
        self.probe_ms = int(probe_seconds * 1000)
        self._table_name = table_name
        self.counts = counts
        self.clock = clock
        self._local = threading.local()

    # -- use ----------------------------------------------------------------------------------------------------
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            probe = self.before_call()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self.after_failure(exc, probe=probe)
                raise
            self.after_success(probe=probe)
            return result

        return guarded

    def __enter__(self) -> CircuitBreaker:
        # per thread and nesting level: one breaker object may guard calls made from several threads
        stack: list[bool] = self._local.__dict__.setdefault("probes", [])
        stack.append(self.before_call())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
                 ) -> None:
        probe = self._local.probes.pop()
        if exc is None:
            self.after_success(probe=probe)
        else:
            self.after_failure(exc, probe=probe)

    # -- transitions --------------------------------------------------------------------------------------------
    def before_call(self) -> bool:
        """Allow the call (True: as the half-open probe) or raise ``CircuitOpen``."""
        for _ in range(_MAX_RACES):
            status = self.status()
            now = self.clock()
            if status.state == CircuitState.CLOSED:
                return False
            if status.state == CircuitState.OPEN and now < status.open_until:
                raise CircuitOpen(self.name, (status.open_until - now) / 1000)
            if status.state == CircuitState.HALF_OPEN and now < status.probe_until:
                raise CircuitOpen(self.name, (status.probe_until - now) / 1000)
            # open and due, or a probe that never reported: take the probe, if nobody else did first
            expected = ("openUntil", status.open_until) if status.state == CircuitState.OPEN else \
                ("probeUntil", status.probe_until)
            if self._write(
                "SET #state = :half, probeUntil = :probe, updatedAt = :now",
                f"#state = :seen AND {expected[0]} = :expected",
                {":half": CircuitState.HALF_OPEN.value, ":probe": now + self.probe_ms, ":now": now,
                 ":seen": status.state.value, ":expected": expected[1]},
            ):
                return True
        raise CircuitOpen(self.name)

    def after_success(self, *, probe: bool = False) -> None:
        if not probe:
            return
        now = self.clock()
        self._write(
            "SET #state = :closed, failures = :zero, windowStart = :now, updatedAt = :now REMOVE probeUntil",
            "#state = :half",
            {":closed": CircuitState.CLOSED.value, ":zero": 0, ":now": now, ":half": CircuitState.HALF_OPEN.value},
        )

    def after_failure(self, exc: BaseException, *, probe: bool = False) -> None:
        if not self.counts(exc):
            if probe:  # the probe learnt nothing about the dependency: let the next caller probe at once
                self._write("SET probeUntil = :now", "#state = :half",
                            {":now": self.clock(), ":half": CircuitState.HALF_OPEN.value})
            return
        now = self.clock()
        if probe:
            if self._write(
                "SET #state = :open, openedAt = :now, openUntil = :until, updatedAt = :now REMOVE probeUntil",
                "#state = :half", {":open": CircuitState.OPEN.value, ":now": now, ":until": now + self.open_ms,
                                   ":half": CircuitState.HALF_OPEN.value},
            ):
                self._opened(reopened=True)
            return
        failures = self._count_failure(now)
        if failures is not None and failures >= self.failure_threshold and self._write(
            "SET #state = :open, openedAt = :now, openUntil = :until, updatedAt = :now",
            "#state = :closed AND failures >= :threshold",
            {":open": CircuitState.OPEN.value, ":now": now, ":until": now + self.open_ms,
             ":closed": CircuitState.CLOSED.value, ":threshold": self.failure_threshold},
        ):
            self._opened(reopened=False)

    def _count_failure(self, now: int) -> int | None:
        """Add one failure to the current window (or start a new one); the count after it, or None when the
        circuit is no longer closed (someone opened it meanwhile)."""
        values = {":closed": CircuitState.CLOSED.value, ":one": 1, ":now": now, ":floor": now - self.window_ms}
        for _ in range(_MAX_RACES):
            attributes = self._update(
                "SET #state = if_not_exists(#state, :closed), windowStart = if_not_exists(windowStart, :now), "
                "updatedAt = :now ADD failures :one",
                "attribute_not_exists(PK) OR (#state = :closed AND windowStart > :floor)", values,
            )
            if attributes is not None:
                return int(attributes.get("failures", {}).get("N", "0"))
            reset = self._update(  # the window is over: this failure starts a new one
                "SET failures = :one, windowStart = :now, updatedAt = :now",
                "#state = :closed AND windowStart <= :floor", values,
            )
            if reset is not None:
                return 1
            if self.status().state != CircuitState.CLOSED:
                return None
        return None

    def _opened(self, *, reopened: bool) -> None:
        from coafi import telemetry

        try:
            telemetry.increment_counter("CircuitOpened", {"dependency": self.name})
            telemetry.log_warning("circuit opened", dependency=self.name, reopened=reopened,
                                  open_seconds=self.open_ms / 1000)
        except Exception:
            pass

    # -- table --------------------------------------------------------------------------------------------------
    @property
    def table_name(self) -> str:
        if self._table_name is None:
            from coafi.config import function_settings

            self._table_name = function_settings().table_name
        return self._table_name

    def key(self) -> dict[str, Any]:
        return {"PK": {"S": PREFIX + self.name}, "SK": {"S": SORT_KEY}}

    def status(self) -> CircuitStatus:
        from coafi import aws

        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=self.key(), ConsistentRead=True
                                               ).get("Item")
        if not item:
            return CircuitStatus(self.name, CircuitState.CLOSED)

        def number(attribute: str) -> int:
            return int(item.get(attribute, {}).get("N", "0"))

        return CircuitStatus(
            self.name, CircuitState(item.get("state", {}).get("S", "CLOSED")), failures=number("failures"),
            window_start=number("windowStart"), opened_at=number("openedAt"), open_until=number("openUntil"),
            probe_until=number("probeUntil"),
        )

    def reset(self) -> None:
        """Close the circuit by hand (operator action): the item is deleted."""
        from coafi import aws

        aws.client("dynamodb").delete_item(TableName=self.table_name, Key=self.key())

    def _update(self, update: str, condition: str, values: dict[str, Any]) -> dict[str, Any] | None:
        """One conditional UpdateItem; the new item, or None when the condition did not hold."""
        from botocore.exceptions import ClientError

        from coafi import aws

        typed = {k: ({"N": str(v)} if isinstance(v, int) else {"S": str(v)}) for k, v in values.items()}
        tokens = set(re.findall(r":\w+", update + " " + condition))
        used = {k: v for k, v in typed.items() if k in tokens}
        names = {"#state": "state"} if "#state" in update or "#state" in condition else {}
        try:
            response = aws.client("dynamodb").update_item(
                TableName=self.table_name, Key=self.key(), UpdateExpression=update, ConditionExpression=condition,
                ExpressionAttributeValues=used, ReturnValues="ALL_NEW",
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        attributes: dict[str, Any] = response.get("Attributes", {})
        return attributes

    def _write(self, update: str, condition: str, values: dict[str, Any]) -> bool:
        return self._update(update, condition, values) is not None
