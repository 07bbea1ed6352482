"""The local clock and schedule firing, from the project side (the plugin fires from inside LocalStack).

The logic lives in the plugin package (``coafi_localstack_plugin.schedules``), which must stay importable by
LocalStack's own interpreter; this module binds it to the project's layout and boto3 clients.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from coafi.local.layout import LocalLayout
from coafi.local.localstack_plugin.coafi_localstack_plugin.schedules import (
    Clock,
    Fired,
    LocalScheduler,
    parse_duration,
)

__all__ = ["Clock", "Fired", "LocalScheduler", "advance_clock", "local_clock", "parse_duration", "tick"]


def local_clock(project_root: Path | None = None) -> Clock:
    return Clock(LocalLayout.for_root(project_root).clock_file)


def advance_clock(by: timedelta | str, project_root: Path | None = None) -> timedelta:
    """Move the local clock forward; due schedules fire on the next tick (within a second when embedded)."""
    return local_clock(project_root).advance(parse_duration(by) if isinstance(by, str) else by)


def tick(project_root: Path | None = None) -> list[Fired]:
    """Fire every schedule due by the local clock now, on ``AWS_ENDPOINT_URL`` or else the embedded cloud —
    never on AWS itself."""
    import os

    import boto3

    from coafi.local.harness import DEFAULT_ENDPOINT

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
    )
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]
        return clients[service]

    layout = LocalLayout.for_root(project_root)
    return LocalScheduler(client, Clock(layout.clock_file), layout.schedules_state_file).tick()
