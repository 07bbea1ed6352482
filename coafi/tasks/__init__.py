"""Tasks: run an action or start a workflow now, after a delay, or on a cron (the design's TaskScheduler and
TaskDispatcher), on SQS, EventBridge Scheduler and DynamoDB. Design notes: coafi/tasks/README.md.

    from coafi.tasks import Task, TaskScheduler, TaskSettings

    scheduler = TaskScheduler(TaskSettings.from_stack())
    record = scheduler.schedule_task_with_delay(Task(type="generate-content", payload={...}), 3 * 86400)
    scheduler.get_task_status(record.id).status      # DELAYED ... SUCCEEDED
"""

from coafi.tasks.dispatcher import Destination, Targets, TaskDispatcher
from coafi.tasks.errors import (
    InvalidTaskMessage,
    NoWorkerForTask,
    TaskAlreadyExists,
    TaskBusy,
    TaskConfigurationError,
    TaskNotFound,
    TaskSchedulingError,
    WorkerNotFound,
)
from coafi.tasks.models import (
    MAX_QUEUE_DELAY_SECONDS,
    DispatchResult,
    Route,
    Task,
    TaskErrorInfo,
    TaskMessage,
    TaskRecord,
    TaskStatus,
    Worker,
)
from coafi.tasks.scheduler import BatchResult, TaskScheduler
from coafi.tasks.settings import DispatcherSettings, TaskSettings
from coafi.tasks.store import TaskStore
from coafi.tasks.workers import WorkerRegistry

__all__ = [
    "MAX_QUEUE_DELAY_SECONDS",
    "BatchResult",
    "Destination",
    "DispatchResult",
    "DispatcherSettings",
    "InvalidTaskMessage",
    "NoWorkerForTask",
    "Route",
    "Targets",
    "Task",
    "TaskAlreadyExists",
    "TaskBusy",
    "TaskConfigurationError",
    "TaskDispatcher",
    "TaskErrorInfo",
    "TaskMessage",
    "TaskNotFound",
    "TaskRecord",
    "TaskScheduler",
    "TaskSchedulingError",
    "TaskSettings",
    "TaskStatus",
    "TaskStore",
    "Worker",
    "WorkerNotFound",
    "WorkerRegistry",
]
