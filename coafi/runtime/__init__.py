"""Code that runs inside COAFI's Lambda functions."""

from coafi.runtime.action import StepContext, StepEvent, action

__all__ = ["StepContext", "StepEvent", "action"]
