"""Validate a content request: a known content type, a topic, and a sensible length."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from coafi.errors import PermanentError, validation_problems
from coafi.runtime import StepEvent, action


class InvalidContentParameters(PermanentError):
    """The request cannot be fulfilled as sent; retrying will not help."""


class Settings(BaseModel):
    allowedContentTypes: list[str] = Field(min_length=1)
    maxLengthWords: int = Field(2000, ge=1)


class ContentRequest(BaseModel):
    contentType: str
    parameters: dict[str, Any] = Field(default_factory=dict)


@action
def handler(event: StepEvent) -> dict[str, Any]:
    settings = Settings.model_validate(event.parameters)
    try:
        request = ContentRequest.model_validate(event.input)
    except ValidationError as exc:
        raise InvalidContentParameters(f"invalid content request: {validation_problems(exc, root='input')}") \
            from None
    errors: list[str] = []
    if request.contentType not in settings.allowedContentTypes:
        errors.append(f"contentType '{request.contentType}' is not one of {settings.allowedContentTypes}")
    topic = request.parameters.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        errors.append("parameters.topic is required")
    length = request.parameters.get("lengthWords", 200)
    if not isinstance(length, int) or not 1 <= length <= settings.maxLengthWords:
        errors.append(f"parameters.lengthWords must be a whole number from 1 to {settings.maxLengthWords}")
    if errors:
        raise InvalidContentParameters("; ".join(errors))
    return {"valid": True, "contentType": request.contentType, "lengthWords": length}
