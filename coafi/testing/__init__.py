"""Test helpers for workflow authors: run compiled workflows in process (moto) with the real handlers."""

from coafi.testing.inprocess import ExecutionResult, InProcessCloud

__all__ = ["ExecutionResult", "InProcessCloud"]
