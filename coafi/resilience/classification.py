"""Error classification: transient (retry), permanent (do not retry), system (a bug).

At run time ``classify(exc)`` looks at the exception: COAFI's typed errors by class, AWS SDK ``ClientError``s by
error code and HTTP status, network and timeout errors by type; anything else is a system error (a bug).

In a state machine only the error *name* is known (the exception's class name), so the compiler expands the
category words of an error policy (``transient``, ``permanent``, ``system``) into the names listed here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from coafi.errors import CoafiError, PermanentError, TransientError


class ErrorCategory(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEM = "system"


CATEGORY_WORDS: tuple[str, ...] = tuple(c.value for c in ErrorCategory)

#: Error names Step Functions sees for transient failures: Lambda service errors, Step Functions' timeout,
#: COAFI's transient errors, the AWS SDK's throttling/5xx codes, Python's and botocore's network errors.
TRANSIENT_NAMES: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "States.Timeout",
    "States.HeartbeatTimeout",
    "TransientError",
    "ThrottlingError",
    "DependencyTimeout",
    "DependencyUnavailable",
    "CircuitOpen",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalServerError",
    "InternalFailure",
    "TimeoutError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "ConnectionAbortedError",
    "BrokenPipeError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
)

#: Names of permanent failures: COAFI's permanent errors and the AWS SDK's validation/permission/not-found codes.
PERMANENT_NAMES: tuple[str, ...] = (
    "PermanentError",
    "InvalidInput",
    "AccessDenied",
    "NotFound",
    "InvalidStepEvent",
    "ValidationException",
    "ValidationError",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "ResourceNotFoundException",
    "NoSuchKey",
    "NoSuchBucket",
    "ConditionalCheckFailedException",
    "States.Permissions",
)

#: Names of bugs: COAFI's SystemFault, Step Functions' runtime and data errors, Python programming errors.
SYSTEM_NAMES: tuple[str, ...] = (
    "SystemFault",
    "States.Runtime",
    "States.DataLimitExceeded",
    "States.ResultPathMatchFailure",
    "States.ParameterPathFailure",
    "States.IntrinsicFailure",
    "TypeError",
    "KeyError",
    "AttributeError",
    "NameError",
    "ValueError",
    "IndexError",
    "ZeroDivisionError",
    "AssertionError",
    "NotImplementedError",
    "RecursionError",
    "ImportError",
    "ModuleNotFoundError",
)

NAMES: dict[ErrorCategory, tuple[str, ...]] = {
    ErrorCategory.TRANSIENT: TRANSIENT_NAMES,
    ErrorCategory.PERMANENT: PERMANENT_NAMES,
    ErrorCategory.SYSTEM: SYSTEM_NAMES,
}
_BY_NAME: dict[str, ErrorCategory] = {name: category for category, names in NAMES.items() for name in names}

#: AWS error codes meaning "slow down": retried even though most come with HTTP 400.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionInProgressException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "BandwidthLimitExceeded", "LimitExceededException", "EC2ThrottledException",
})
TIMEOUT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "IDPCommunicationError"})
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "NotFound", "404"})
ACCESS_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "Forbidden", "403",
})
#: Exception class names (anywhere in the class's MRO) of network and timeout failures of HTTP libraries.
_NETWORK_CLASS_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "HTTPClientError", "NewConnectionError", "ProtocolError", "ReadTimeout",
    "ConnectTimeout", "Timeout", "TimeoutException", "ConnectError",
})


def category_of_name(name: str) -> ErrorCategory | None:
    """The category of an error name as Step Functions reports it, when it is one of the known names."""
    return _BY_NAME.get(name)


def names_of(category: ErrorCategory | str) -> list[str]:
    return list(NAMES[ErrorCategory(category)])


def _client_error_parts(exc: BaseException) -> tuple[str, int] | None:
    """(error code, HTTP status) of a botocore ClientError (recognised by its ``response``, no import)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict) or "Error" not in response:
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code, int(status) if isinstance(status, int) else 0


def classify_client_error(code: str, status: int) -> tuple[ErrorCategory, type[Exception]]:
    """The category of an AWS error and COAFI's typed error for it."""
    from coafi.resilience import errors

    if code in THROTTLING_CODES or status == 429:
        return ErrorCategory.TRANSIENT, errors.ThrottlingError
    if code in TIMEOUT_CODES or status in (408, 504):
        return ErrorCategory.TRANSIENT, errors.DependencyTimeout
    if status >= 500 or code in ("InternalServerError", "InternalFailure", "ServiceUnavailable",
                                 "ServiceUnavailableException", "InternalError"):
        return ErrorCategory.TRANSIENT, errors.DependencyUnavailable
    if code in ACCESS_CODES or status in (401, 403):
        return ErrorCategory.PERMANENT, errors.AccessDenied
    if code in NOT_FOUND_CODES or status == 404:
        return ErrorCategory.PERMANENT, errors.NotFound
    if 400 <= status < 500 or code.endswith(("ValidationException", "Validation")):
        return ErrorCategory.PERMANENT, errors.InvalidInput
    return ErrorCategory.SYSTEM, errors.SystemFault


def classify(exc: BaseException) -> ErrorCategory:
    """Transient, permanent or system, from the exception itself."""
    if isinstance(exc, TransientError):
        return ErrorCategory.TRANSIENT
    if isinstance(exc, PermanentError):
        return ErrorCategory.PERMANENT
    if isinstance(exc, CoafiError):
        return ErrorCategory.SYSTEM
    parts = _client_error_parts(exc)
    if parts is not None:
        return classify_client_error(*parts)[0]
    if isinstance(exc, TimeoutError | ConnectionError):
        return ErrorCategory.TRANSIENT
    if any(cls.__name__ in _NETWORK_CLASS_NAMES for cls in type(exc).__mro__):
        return ErrorCategory.TRANSIENT
    return category_of_name(type(exc).__name__) or ErrorCategory.SYSTEM


def typed(exc: Exception) -> Exception:
    """An error whose class name says its category, for errors Step Functions could not classify by name: an AWS
    SDK ``ClientError`` (always named "ClientError") becomes ``ThrottlingError``, ``DependencyUnavailable``,
    ``AccessDenied``, ``NotFound``, ``InvalidInput``... with the AWS code in the message. Others are returned
    as they are."""
    parts = _client_error_parts(exc)
    if parts is None or type(exc).__name__ != "ClientError":
        return exc
    code, status = parts
    _, kind = classify_client_error(code, status)
    return kind(f"{code} (HTTP {status}): {exc}")
