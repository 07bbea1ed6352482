"""Admission of Lambda invocations to execution environments: warm reuse first, a cap on concurrent cold starts.

LocalStack starts a new execution environment for every invocation that finds no idle one, all at once (up to 16
in parallel). On AWS those environments start on separate hosts; here each is a Python process on the same few
cores, so 50 simultaneous invocations mean 50 interpreters importing pydantic and boto3 at once, and the Step
Functions Task timeouts (which count from the invoke) run out before any handler starts.

:class:`EnvironmentGate` queues such invocations instead. An invocation is admitted, in arrival order per
function version, to:

1. an idle (warm) environment of its function version, when one is free; else
2. a start slot: it may start a new environment when fewer than ``max_starts`` environments are starting
   (slots go to the oldest waiting invocation across all functions); else
3. it waits until an environment is released or a start finishes.

The invocation's own timeout is not affected: the executor starts its timer when the invocation is sent to the
environment, after admission, as on AWS (a throttled or queued invocation's timeout starts when it runs).

Pure threading logic: the LocalStack glue (``executor.install_environment_gate``) supplies the reservation.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

MAX_STARTS_ENV = "COAFI_LAMBDA_MAX_STARTS"
POLL_S = 0.1  # a released environment is noticed at once (notify); this bounds a missed wake-up (keepalive stop)

T = TypeVar("T")


def default_max_starts() -> int:
    """One concurrent environment start per CPU the process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def max_starts_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``COAFI_LAMBDA_MAX_STARTS`` (a positive integer), else one per CPU."""
    raw = (os.environ if environ is None else environ).get(MAX_STARTS_ENV, "").strip()
    if not raw:
        return default_max_starts()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_STARTS_ENV}={raw!r} is not an integer: set it to the number of Lambda "
                         "environments that may start at once (e.g. 2), or unset it for one per CPU") from None
    if value < 1:
        raise ValueError(f"{MAX_STARTS_ENV}={raw!r} must be at least 1 (environments that may start at once)")
    return value


@dataclass
class GateStats:
    """Counters since the gate was created (for logs and benchmarks)."""

    admitted_warm: int = 0
    admitted_to_start: int = 0
    queued: int = 0  # admissions that had to wait at least once
    max_waiting: int = 0
    max_starting: int = 0


class EnvironmentGate:
    """See the module docstring. ``admit`` returns a reserved warm environment, or ``None``: then the caller holds
    a start slot, must start an environment and call :meth:`start_finished` (also when the start failed)."""

    def __init__(self, max_starts: int, *, poll_s: float = POLL_S) -> None:
        if max_starts < 1:
            raise ValueError(f"max_starts must be at least 1, got {max_starts}")
        self.max_starts = max_starts
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._starting = 0
        self._next_ticket = 0
        self._queues: dict[str, deque[int]] = {}
        self.stats = GateStats()

    @property
    def starting(self) -> int:
        with self._cond:
            return self._starting

    @property
    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def admit(self, key: str, try_reserve: Callable[[], T | None]) -> T | None:
        """Wait for a warm environment of ``key`` (``try_reserve`` returns one reserved, or None) or a start slot.

        ``try_reserve`` is called with the gate's lock held; it must not block or call back into the gate.
        """
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            queue = self._queues.setdefault(key, deque())
            queue.append(ticket)
            waiting = sum(len(q) for q in self._queues.values())
            self.stats.max_waiting = max(self.stats.max_waiting, waiting)
            waited = False
            try:
                while True:
                    if queue[0] == ticket:  # first of its function version: the others wait behind it
                        environment = try_reserve()
                        if environment is not None:
                            self.stats.admitted_warm += 1
                            return environment
                        if self._starting < self.max_starts and ticket == self._oldest_head():
                            self._starting += 1
                            self.stats.admitted_to_start += 1
                            self.stats.max_starting = max(self.stats.max_starting, self._starting)
                            return None
                    if not waited:
                        waited = True
                        self.stats.queued += 1
                    self._cond.wait(self._poll_s)
            finally:
                queue.remove(ticket)
                if not queue:
                    del self._queues[key]
                self._cond.notify_all()  # the next in line may go

    def start_finished(self) -> None:
        """Give back the start slot ``admit`` handed out (the environment started, or failed to)."""
        with self._cond:
            if self._starting <= 0:
                raise RuntimeError("start_finished() without a start slot handed out by admit()")
            self._starting -= 1
            self._cond.notify_all()

    def released(self) -> None:
        """An environment went back to idle (or was stopped): wake the waiting invocations."""
        with self._cond:
            self._cond.notify_all()

    def _oldest_head(self) -> int:
        return min(q[0] for q in self._queues.values())
