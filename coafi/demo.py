"""``coafi demo`` / ``make demo``: the whole product in one command, on the embedded local cloud.

local cloud up -> CDK deploy -> ContentRequested event on the app's bus -> the content-generation state
machine runs -> its step timeline is read back from DynamoDB. Exit 0 only if the execution SUCCEEDED.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from coafi.cli.render import timeline_table
from coafi.state import StateStore, StepRecord

WORKFLOW = "content-generation"


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def run_demo(*, project_root: Path, keep: bool = False) -> int:
    from coafi.deploy import deploy
    from coafi.executions import find_execution, publish_event, wait_for_execution
    from coafi.local import harness

    started_here = False
    if not os.environ.get("AWS_ENDPOINT_URL"):
        _say("starting the embedded local cloud (LocalStack on this host, no Docker)")
        info = harness.up(project_root=project_root)
        started_here = info.started
        _say(f"local cloud at {info.endpoint}")
    try:
        _say("deploying the CDK app to the local cloud")
        outputs = deploy(local=True, project_root=project_root)
        request_id = f"demo-{uuid.uuid4()}"
        detail = {
            "contentType": "article",
            "parameters": {"topic": "serverless workflow orchestration", "lengthWords": 120},
            "metadata": {"requestId": request_id, "userId": "demo-user", "role": "editor", "priority": 1},
        }
        since = datetime.now(UTC) - timedelta(seconds=5)
        event_id = publish_event(outputs.event_bus_name, "coafi.content", "ContentRequested", detail)
        _say(f"published ContentRequested {event_id} on {outputs.event_bus_name} (requestId {request_id})")
        execution_arn = find_execution(outputs.workflow_arn(WORKFLOW), request_id, since=since)
        _say(f"execution {execution_arn}")
        store = StateStore(outputs.state_table_name)

        def progress(record: StepRecord) -> None:
            print(f"    {record.stepId:<22} {record.status}", flush=True)

        description = wait_for_execution(execution_arn, store, on_step=progress)
        status = description["status"]
        _say(f"execution {status}; step timeline read back from DynamoDB table {outputs.state_table_name}:")
        print(timeline_table(store.list_steps(execution_arn)))
        if status != "SUCCEEDED":
            print(f"error: {description.get('error')}: {description.get('cause')}")
            return 1
        return 0
    finally:
        if started_here and not keep:
            _say("stopping the local cloud (use --keep to leave it running)")
            harness.down(project_root=project_root)
