"""Typed errors for action authors, by category. Step Functions' Retry and Catch match the class name exactly,
so every class here is listed by name in its category (``coafi.resilience.classification``) and error policies
that name a category (``errorTypes: [transient]``) match them all.

    from coafi.resilience.errors import DependencyUnavailable, InvalidInput

    if response.status >= 500:
        raise DependencyUnavailable(f"payments answered {response.status}")
"""

from __future__ import annotations

from coafi.errors import CoafiError, PermanentError, TransientError

# -- transient: worth retrying ---------------------------------------------------------------------------------


class ThrottlingError(TransientError):
    """The dependency refused the call for now (rate limit, throttling, HTTP 429)."""


class DependencyTimeout(TransientError):
    """The dependency did not answer in time."""


class DependencyUnavailable(TransientError):
    """The dependency failed on its side (HTTP 5xx) or could not be reached (connection refused, reset)."""


class CircuitOpen(TransientError):
    """A circuit breaker is open: the dependency failed repeatedly, so the call was not made (fail fast)."""

    def __init__(self, dependency: str, retry_after_seconds: float | None = None) -> None:
        self.dependency = dependency
        self.retry_after_seconds = retry_after_seconds
        after = f"; it half-opens in {retry_after_seconds:.0f} s" if retry_after_seconds is not None else ""
        super().__init__(f"circuit of dependency '{dependency}' is open{after}: the call was not made")

    def __reduce__(self) -> tuple[type[CircuitOpen], tuple[str, float | None]]:
        return (type(self), (self.dependency, self.retry_after_seconds))


# -- permanent: retrying will not help -------------------------------------------------------------------------


class InvalidInput(PermanentError):
    """The request is invalid (validation failed, HTTP 400/422)."""


class AccessDenied(PermanentError):
    """The caller may not do this (HTTP 401/403, AccessDenied)."""


class NotFound(PermanentError):
    """What the step needs does not exist (HTTP 404, ResourceNotFound)."""


# -- system: a bug -------------------------------------------------------------------------------------------


class SystemFault(CoafiError):
    """A bug or broken invariant in the workflow's own code: neither retrying nor the caller can fix it."""
