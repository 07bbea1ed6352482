"""Call a simulated downstream dependency through its circuit breaker (the resilience-demo workflow).

The dependency is deterministic, driven by the input and by call counts kept in the state table
(``PK = DEMO#DEPENDENCY#<dependency>``): ``SK = CALLS`` counts every call that reached it, ``SK = CALLS#<key>`` the
calls for one key. It fails with ``DependencyUnavailable`` (transient) while ``down`` is true, or for the first
``failTimes`` calls of a key; otherwise it answers with the call counts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coafi import aws
from coafi.config import function_settings
from coafi.resilience.circuit import CircuitBreaker
from coafi.resilience.errors import DependencyUnavailable, InvalidInput
from coafi.runtime import StepEvent, action

FAILURE_THRESHOLD = 3
WINDOW_SECONDS = 300
OPEN_SECONDS = 900


class DependencyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dependency: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    key: str = Field("", max_length=200)
    failTimes: int = Field(0, ge=0, le=100)
    down: bool = False


def _count(dependency: str, sort_key: str) -> int:
    response = aws.client("dynamodb").update_item(
        TableName=function_settings().table_name,
        Key={"PK": {"S": f"DEMO#DEPENDENCY#{dependency}"}, "SK": {"S": sort_key}},
        UpdateExpression="ADD calls :one", ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    return int(response["Attributes"]["calls"]["N"])


def call_dependency(request: DependencyRequest, key: str) -> dict[str, Any]:
    total = _count(request.dependency, "CALLS")
    calls = _count(request.dependency, f"CALLS#{key}")
    if request.down:
        raise DependencyUnavailable(f"{request.dependency} is down (call {total})")
    if calls <= request.failTimes:
        raise DependencyUnavailable(f"{request.dependency} failed call {calls} of key {key} "
                                    f"(fails the first {request.failTimes})")
    return {"dependency": request.dependency, "calls": calls, "totalCalls": total}


@action
def handler(event: StepEvent) -> dict[str, Any]:
    try:
        request = DependencyRequest.model_validate(event.input)
    except ValidationError as exc:
        raise InvalidInput(f"call-dependency input: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    breaker = CircuitBreaker(request.dependency, failure_threshold=FAILURE_THRESHOLD,
                             window_seconds=WINDOW_SECONDS, open_seconds=OPEN_SECONDS)
    with breaker:
        return call_dependency(request, request.key or event.context.executionId)
