"""Typed errors for action authors. Step Functions matches Retry/Catch on the exception's class name."""

from __future__ import annotations


class CoafiError(Exception):
    """Base of COAFI's own errors."""


class TransientError(CoafiError):
    """Worth retrying: throttling, timeouts, a dependency briefly unavailable. Retried by default."""


class PermanentError(CoafiError):
    """Retrying will not help: invalid input, permission denied, not found. Never retried by default."""


class InvalidStepEvent(PermanentError):
    """A Lambda step received an event that is not a COAFI step event."""
