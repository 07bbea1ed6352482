"""Settings read from the environment, parsed once into typed models."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class FunctionSettings(BaseModel):
    """Environment of every COAFI Lambda function (set by the CDK app)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    table_name: str = Field(alias="COAFI_TABLE_NAME", min_length=1)
    event_bus_name: str | None = Field(None, alias="COAFI_EVENT_BUS_NAME")
    retention_days: int = Field(30, alias="COAFI_RETENTION_DAYS", ge=1)
    payload_bucket: str | None = Field(
        None, alias="COAFI_PAYLOAD_BUCKET", description="S3 bucket for payloads too large for a DynamoDB item"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FunctionSettings:
        return cls.model_validate(dict(os.environ if env is None else env))


@lru_cache(maxsize=1)
def function_settings() -> FunctionSettings:
    """The settings of the running function; a missing COAFI_TABLE_NAME fails the first invocation loudly."""
    return FunctionSettings.from_env()
