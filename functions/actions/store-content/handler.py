"""Store the generated content in the state table. The content id derives from the execution, so a retried
attempt overwrites the same item instead of storing a second copy."""

from __future__ import annotations

import json
import uuid
from typing import Any

from coafi import aws
from coafi.config import function_settings
from coafi.errors import PermanentError
from coafi.runtime import StepEvent, action


class NothingToStore(PermanentError):
    """The generate step produced no content."""


@action
def handler(event: StepEvent) -> dict[str, Any]:
    generated = event.output_of("generateContent")
    if not isinstance(generated, dict) or not generated.get("content"):
        raise NothingToStore("no output from step 'generateContent' to store")
    content_id = str(uuid.uuid5(uuid.NAMESPACE_URL, event.context.executionId))
    table = function_settings().table_name
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={
            "PK": {"S": f"CONTENT#{content_id}"},
            "SK": {"S": "CONTENT"},
            "contentType": {"S": str(event.input.get("contentType", ""))},
            "body": {"S": generated["content"]},
            "checksum": {"S": generated.get("checksum", "")},
            "metadataJson": {"S": json.dumps(event.input.get("metadata", {}))},
            "executionId": {"S": event.context.executionId},
        },
    )
    return {"contentId": content_id, "contentUrl": f"dynamodb://{table}/CONTENT%23{content_id}"}
