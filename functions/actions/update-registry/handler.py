"""Register the stored content so it can be found by type and request."""

from __future__ import annotations

import json
from typing import Any

from coafi import aws
from coafi.config import function_settings
from coafi.errors import PermanentError
from coafi.runtime import StepEvent, action
from coafi.state.store import now_iso


class NothingToRegister(PermanentError):
    """The store step produced no content id."""


@action
def handler(event: StepEvent) -> dict[str, Any]:
    stored = event.output_of("storeContent")
    if not isinstance(stored, dict) or "contentId" not in stored:
        raise NothingToRegister("no contentId from step 'storeContent'")
    registry = str(event.parameters.get("registry", "content"))
    generated = event.output_of("generateContent", {})
    entry = {
        "contentType": event.input.get("contentType"),
        "parameters": event.input.get("parameters", {}),
        "metadata": event.input.get("metadata", {}),
        "contentUrl": stored["contentUrl"],
        "generationStats": generated.get("stats", {}),
    }
    aws.client("dynamodb").put_item(
        TableName=function_settings().table_name,
        Item={
            "PK": {"S": f"REGISTRY#{registry}"},
            "SK": {"S": stored["contentId"]},
            "entryJson": {"S": json.dumps(entry)},
            "registeredAt": {"S": now_iso()},
        },
    )
    return {"registry": registry, "contentId": stored["contentId"]}
