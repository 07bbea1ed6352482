"""Check that the requesting user's role may generate the requested content type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from coafi.errors import PermanentError
from coafi.runtime import StepEvent, action


class PermissionDenied(PermanentError):
    """The user may not generate this content."""


class Settings(BaseModel):
    permissions: dict[str, list[str]] = Field(min_length=1, description="role -> content types it may generate")


class Requester(BaseModel):
    userId: str = Field(min_length=1)
    role: str = "viewer"


@action
def handler(event: StepEvent) -> dict[str, Any]:
    settings = Settings.model_validate(event.parameters)
    metadata = event.input.get("metadata", {}) if isinstance(event.input, dict) else {}
    requester = Requester.model_validate(metadata)
    content_type = event.input.get("contentType", "")
    allowed = settings.permissions.get(requester.role, [])
    if content_type not in allowed:
        raise PermissionDenied(
            f"user '{requester.userId}' with role '{requester.role}' may not generate:{content_type}"
        )
    return {"granted": True, "userId": requester.userId, "permission": f"generate:{content_type}"}
