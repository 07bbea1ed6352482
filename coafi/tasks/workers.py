"""The worker registry: which worker runs which task types.

A worker is a name for something the dispatcher can run (its ``target``: an action name or ``workflow:<id>``)
and the task types it accepts (``capabilities``: exact types or fnmatch patterns like ``image-*``). Tasks whose
type names a deployed action or workflow need no worker; workers let other types (``resize-image``) reach an
action (``image-tools``), and move a type to another target without rescheduling anything. Workers live in
the state table (``WORKERS`` / ``WORKER#<id>``) and count the tasks routed through them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from coafi.tasks.errors import WorkerNotFound
from coafi.tasks.models import Worker
from coafi.tasks.store import TaskStore

DEFAULT_CACHE_SECONDS = 15.0


class WorkerRegistry:
    """Register, unregister and look up workers; ``matching`` reads them through a short cache (the dispatcher
    asks for every task)."""

    def __init__(self, store: TaskStore, *, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Worker]] | None = None

    def register_worker(self, worker_id: str, capabilities: Iterable[str], *, target: str | None = None) -> Worker:
        """Register (or update) ``worker_id`` running ``capabilities`` through ``target`` (default: the worker id,
        i.e. a worker named after the action or ``workflow:<id>`` it is). Counters survive re-registration."""
        worker = Worker(id=worker_id, capabilities=list(capabilities), target=target or worker_id)
        saved = self.store.put_worker(worker.id, worker.capabilities, worker.target, datetime.now(UTC))
        self.invalidate()
        return saved

    def unregister_worker(self, worker_id: str) -> bool:
        """True when the worker was registered."""
        removed = self.store.delete_worker(worker_id)
        self.invalidate()
        return removed

    def get_worker_status(self, worker_id: str) -> Worker:
        worker = self.store.get_worker(worker_id)
        if worker is None:
            raise WorkerNotFound(worker_id)
        return worker

    def list_workers(self) -> list[Worker]:
        return self.store.list_workers()

    def matching(self, task_type: str) -> list[tuple[int, Worker]]:
        """Workers able to run ``task_type``, best match first (exact capability before pattern)."""
        found = [(rank, w) for w in self._workers() if (rank := w.match(task_type)) is not None]
        return sorted(found, key=lambda pair: (pair[0], pair[1].id))

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _workers(self) -> list[Worker]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] > self.cache_seconds:
                self._cached = (now, self.store.list_workers())
            return self._cached[1]

    # design names
    registerWorker = register_worker
    unregisterWorker = unregister_worker
    getWorkerStatus = get_worker_status
