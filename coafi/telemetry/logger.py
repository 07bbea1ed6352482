"""Powertools' ``Logger`` for the COAFI handlers, made on first use.

    from coafi.telemetry.logger import LazyLogger
    from coafi.telemetry.tracing import traced

    logger = LazyLogger()

    @logger.inject_lambda_context(correlation_id_path="executionId")
    @traced
    def handler(event, context):
        logger.append_keys(workflow_id=event["workflowId"])
        ...

Importing Powertools' logging (with jmespath and its formatter) is 30-50 ms of a function's cold start
(BENCHMARKS.md, cold start). A ``LazyLogger`` imports it on the first call of a method: in a handler, the first
invocation, which logs anyway. It is used as Powertools' ``Logger`` is: every attribute is the real logger's, and
``inject_lambda_context`` decorates as Powertools' does (bare or with its options), applying Powertools' decorator
on the first invocation.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

H = TypeVar("H", bound=Callable[..., Any])


class LazyLogger:
    """Stands for ``aws_lambda_powertools.Logger(**options)``, made on first use (thread-safe)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._logger: Any = None
        self._lock = threading.Lock()

    @property
    def logger(self) -> Any:
        """The Powertools ``Logger`` itself (made now if it was not yet)."""
        if self._logger is None:
            with self._lock:
                if self._logger is None:
                    from aws_lambda_powertools import Logger

                    self._logger = Logger(**self._options)
        return self._logger

    @property
    def made(self) -> bool:
        """Whether the Powertools ``Logger`` exists yet (nothing has imported Powertools for it otherwise)."""
        return self._logger is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never for this object's own state (copy, pickle, a failed __init__)
            raise AttributeError(name)
        return getattr(self.logger, name)

    @overload
    def inject_lambda_context(self, handler: H, **options: Any) -> H: ...

    @overload
    def inject_lambda_context(self, handler: None = None, **options: Any) -> Callable[[H], H]: ...

    def inject_lambda_context(self, handler: H | None = None, **options: Any) -> H | Callable[[H], H]:
        """Powertools' ``Logger.inject_lambda_context``: ``@logger.inject_lambda_context`` or
        ``@logger.inject_lambda_context(correlation_id_path=...)``."""
        if handler is None:
            return cast(Callable[[H], H], functools.partial(self.inject_lambda_context, **options))
        decorated: list[Callable[..., Any]] = []
        target = handler

        @functools.wraps(target)
        def run(event: Any, context: Any = None) -> Any:
            if not decorated:
                decorated.append(self.logger.inject_lambda_context(target, **options))
            return decorated[0](event, context)

        return cast(H, run)
