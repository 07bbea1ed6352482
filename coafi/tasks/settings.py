"""Where the scheduler and the dispatcher find their resources: from the environment (Lambda functions, set
by ``infra/constructs/tasks.py``) or from the deployed stack's outputs (the CLI)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_RETENTION_DAYS = 30

#: Stack outputs of the Tasks construct, on top of coafi.deploy.StackOutputs (TaskQueueUrl, ScheduleGroupName...).
OUTPUT_SCHEDULER_ROLE = "TaskSchedulerRoleArn"
OUTPUT_QUEUE_ARN = "TaskQueueArn"
OUTPUT_DEAD_LETTER_ARN = "DeadLetterQueueArn"
OUTPUT_DISPATCHER = "TaskDispatcherFunctionName"


class TaskSettings(BaseModel):
    """What ``TaskScheduler`` needs. ``scheduler_role_arn`` only for delays over 15 minutes and cron tasks;
    ``queue_arn`` and ``dead_letter_arn`` are looked up from the queue when empty."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    table_name: str = Field(alias="COAFI_TABLE_NAME", min_length=1)
    queue_url: str = Field(alias="COAFI_TASK_QUEUE_URL", min_length=1)
    schedule_group: str = Field("default", alias="COAFI_SCHEDULE_GROUP_NAME", min_length=1)
    scheduler_role_arn: str = Field("", alias="COAFI_TASK_SCHEDULER_ROLE_ARN")
    queue_arn: str = Field("", alias="COAFI_TASK_QUEUE_ARN")
    dead_letter_arn: str = Field("", alias="COAFI_DEAD_LETTER_QUEUE_ARN")
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, alias="COAFI_RETENTION_DAYS", ge=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskSettings:
        return cls.model_validate(dict(os.environ if env is None else env))

    @classmethod
    def from_stack(cls, stack_name: str | None = None) -> TaskSettings:
        """From the outputs of the deployed stack (``coafi.deploy.read_outputs``) on the current endpoint."""
        from coafi.deploy import DEFAULT_STACK, read_outputs

        name = stack_name or os.environ.get("COAFI_STACK_NAME") or DEFAULT_STACK
        outputs = read_outputs(name)
        extra = _raw_outputs(name)
        return cls(
            table_name=outputs.state_table_name,
            queue_url=outputs.task_queue_url,
            schedule_group=outputs.schedule_group_name or "default",
            scheduler_role_arn=extra.get(OUTPUT_SCHEDULER_ROLE, ""),
            queue_arn=extra.get(OUTPUT_QUEUE_ARN, ""),
            dead_letter_arn=extra.get(OUTPUT_DEAD_LETTER_ARN, ""),
        )


def _raw_outputs(stack_name: str) -> dict[str, str]:
    """Every output of the stack (``StackOutputs`` keeps only the core ones)."""
    from coafi import aws

    stack = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


class DispatcherSettings(BaseModel):
    """Environment of the dispatcher function. The actions and workflows it may invoke / start, exactly:
    ``COAFI_ACTIONS`` (comma-separated action names) with ``COAFI_ACTION_FUNCTION_PREFIX`` and
    ``COAFI_WORKFLOW_IDS`` with ``COAFI_STATE_MACHINE_ARN_PREFIX`` (``coafi.naming``: fixed names, not maps, for
    Lambda's 4 KB environment), parsed into ``action_functions`` (action -> function name) and ``workflow_arns``
    (workflow id -> state machine ARN), which may also be given directly."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    table_name: str = Field(alias="COAFI_TABLE_NAME", min_length=1)
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, alias="COAFI_RETENTION_DAYS", ge=1)
    action_functions: dict[str, str] = Field(default_factory=dict)
    workflow_arns: dict[str, str] = Field(default_factory=dict)
    concurrency: int = Field(5, alias="COAFI_DISPATCH_CONCURRENCY", ge=1, le=100)
    invoke_timeout: float = Field(25.0, alias="COAFI_TASK_INVOKE_TIMEOUT", gt=0,
                                  description="seconds an action may take when the dispatcher runs it")

    @model_validator(mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        from coafi import naming

        data = dict(value)
        if "action_functions" not in data:
            data["action_functions"] = naming.action_functions(data)
        if "workflow_arns" not in data:
            data["workflow_arns"] = naming.workflow_arns(data)
        return data

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DispatcherSettings:
        return cls.model_validate(dict(os.environ if env is None else env))
