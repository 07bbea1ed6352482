"""Tell subscribers: a ContentGenerated event on the app's event bus."""

from __future__ import annotations

import json
from typing import Any

from coafi import aws
from coafi.config import function_settings
from coafi.errors import TransientError
from coafi.runtime import StepEvent, action


class NotificationNotDelivered(TransientError):
    """EventBridge did not accept the event; worth retrying."""


@action
def handler(event: StepEvent) -> dict[str, Any]:
    stored = event.output_of("storeContent", {})
    detail = {
        "contentId": stored.get("contentId"),
        "contentUrl": stored.get("contentUrl"),
        "requestId": (event.input.get("metadata") or {}).get("requestId"),
        "executionId": event.context.executionId,
    }
    bus = function_settings().event_bus_name
    if not bus:
        raise NotificationNotDelivered("COAFI_EVENT_BUS_NAME is not set for this function")
    result = aws.client("events").put_events(Entries=[{
        "Source": "coafi.content",
        "DetailType": "ContentGenerated",
        "Detail": json.dumps(detail),
        "EventBusName": bus,
    }])
    if result.get("FailedEntryCount"):
        raise NotificationNotDelivered(json.dumps(result.get("Entries", [])))
    return {"notified": True, "eventId": result["Entries"][0].get("EventId")}
