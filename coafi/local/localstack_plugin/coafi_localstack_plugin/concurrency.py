"""Admission of Lambda invocations to execution environments: warm reuse first, a cap on concurrent cold starts.

LocalStack starts a new execution environment for every invocation that finds no idle one, all at once (up to 16
in parallel). On AWS those environments start on separate hosts; here each is a Python process on the same few
cores, so 50 simultaneous invocations mean 50 interpreters importing pydantic and boto3 at once, and the Step
Functions Task timeouts (which count from the invoke) run out before any handler starts.

:class:`EnvironmentGate` queues such invocations instead. An invocation is admitted, in arrival order per
function version, to:

1. an idle (warm) environment of its function version, when one is free; else
2. a start slot: it may start a new environment when fewer than ``max_starts`` environments are starting
   (slots go to the oldest waiting invocation across all functions) and its function version has fewer than
   ``max_environments``; else
3. it waits until an environment is released or a start finishes.

Every invocation is CPU-bound on the same few cores, so more environments per function than a couple per core
add no throughput: each extra one only costs a cold start (an interpreter importing pydantic and boto3) that the
warm environments' invocations then wait for. Queued invocations reuse the warm ones instead.

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
MAX_ENVIRONMENTS_ENV = "COAFI_LAMBDA_MAX_ENVIRONMENTS"
POLL_S = 0.1  # a released environment is noticed at once (notify); this bounds a missed wake-up (keepalive stop)

T = TypeVar("T")


def default_max_starts() -> int:
    """One concurrent environment start per CPU the process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_max_environments() -> int:
    """Environments per function version: two per CPU."""
    return 2 * default_max_starts()


def _positive_int(environ: Mapping[str, str] | None, name: str, default: int, meaning: str) -> int:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer: set it to the number of {meaning} (e.g. 2), "
                         f"or unset it for the default ({default} on this machine)") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1 ({meaning})")
    return value


def max_starts_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``COAFI_LAMBDA_MAX_STARTS`` (a positive integer), else one per CPU."""
    return _positive_int(environ, MAX_STARTS_ENV, default_max_starts(), "Lambda environments that may start at once")


def max_environments_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``COAFI_LAMBDA_MAX_ENVIRONMENTS`` (a positive integer), else two per CPU."""
    return _positive_int(environ, MAX_ENVIRONMENTS_ENV, default_max_environments(),
                         "environments one function version may have")


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

    def __init__(self, max_starts: int, max_environments: int | None = None, *, poll_s: float = POLL_S) -> None:
        if max_starts < 1:
            raise ValueError(f"max_starts must be at least 1, got {max_starts}")
        if max_environments is not None and max_environments < 1:
            raise ValueError(f"max_environments must be at least 1, got {max_environments}")
        self.max_starts = max_starts
        self.max_environments = max_environments
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._starting = 0
        self._next_ticket = 0
        self._queues: dict[str, deque[int]] = {}
        self._counters: dict[str, Callable[[], int]] = {}  # key -> its environments, while it has waiters
        self._starting_by_key: dict[str, int] = {}
        self.stats = GateStats()

    @property
    def starting(self) -> int:
        with self._cond:
            return self._starting

    @property
    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def admit(self, key: str, try_reserve: Callable[[], T | None],
              environments: Callable[[], int] | None = None) -> T | None:
        """Wait for a warm environment of ``key`` (``try_reserve`` returns one reserved, or None) or a start slot.

        ``environments`` counts ``key``'s environments (started, starting or busy) for the ``max_environments``
        cap; without it the cap does not apply. Both are called with the gate's lock held; they must not block or
        call back into the gate.
        """
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            queue = self._queues.setdefault(key, deque())
            queue.append(ticket)
            if environments is not None:
                self._counters[key] = environments
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
                        if self._starting < self.max_starts and ticket == self._oldest_head_that_may_start():
                            self._starting += 1
                            self._starting_by_key[key] = self._starting_by_key.get(key, 0) + 1
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
                    self._counters.pop(key, None)
                self._cond.notify_all()  # the next in line may go

    def start_finished(self, key: str) -> None:
        """Give back the start slot ``admit(key, ...)`` handed out (the environment started, or failed to).

        Call it once the started environment is counted by ``key``'s ``environments`` (or the start failed)."""
        with self._cond:
            if self._starting_by_key.get(key, 0) <= 0:
                raise RuntimeError(f"start_finished({key!r}) without a start slot handed out by admit()")
            self._starting -= 1
            self._starting_by_key[key] -= 1
            if not self._starting_by_key[key]:
                del self._starting_by_key[key]
            self._cond.notify_all()

    def released(self) -> None:
        """An environment went back to idle (or was stopped): wake the waiting invocations."""
        with self._cond:
            self._cond.notify_all()

    def _oldest_head_that_may_start(self) -> int | None:
        """The oldest first-in-line invocation whose function version may have another environment."""
        heads = [q[0] for key, q in self._queues.items() if self._may_grow(key)]
        return min(heads) if heads else None

    def _may_grow(self, key: str) -> bool:
        counter = self._counters.get(key)
        if self.max_environments is None or counter is None:
            return True
        return counter() + self._starting_by_key.get(key, 0) < self.max_environments
