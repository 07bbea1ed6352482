"""Errors of the task scheduler and dispatcher."""

from __future__ import annotations

from coafi.errors import CoafiError, PermanentError


class TaskError(CoafiError):
    """Base of the task errors."""


class TaskNotFound(TaskError, KeyError):
    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"no task '{self.task_id}'"


class TaskAlreadyExists(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"a task with id '{task_id}' already exists; ids are unique (leave id out to get one)")
        self.task_id = task_id


class TaskSchedulingError(TaskError):
    """The task could not be put on its way (queue or schedule refused it); its record says FAILED."""


class TaskConfigurationError(TaskError):
    """A setting the operation needs is missing (e.g. the Scheduler role for long delays)."""


class WorkerNotFound(TaskError, KeyError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(worker_id)
        self.worker_id = worker_id

    def __str__(self) -> str:
        return f"no worker '{self.worker_id}' is registered"


class NoWorkerForTask(PermanentError):
    """No registered worker, action or workflow of this deployment can run the task's type."""


class InvalidTaskMessage(PermanentError):
    """A queue message that is not a COAFI task message (a poison message: it fails alone, then goes to the
    dead-letter queue after the queue's maxReceiveCount)."""


class TaskBusy(TaskError):
    """Another dispatcher holds the task right now (its lease has not run out); retry the message later."""
