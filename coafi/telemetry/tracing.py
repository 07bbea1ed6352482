"""X-Ray tracing of the COAFI Lambda handlers through Powertools Tracer, made on first use.

    from coafi.telemetry.tracing import traced

    @traced
    def handler(event, context): ...

Importing this module imports nothing of Powertools or the X-Ray SDK. The first invocation makes one Powertools
``Tracer`` per process when tracing is available (in Lambda, ``POWERTOOLS_TRACE_DISABLED`` not set, the
``aws_xray_sdk`` package in the layer) and wraps the handler in its ``capture_lambda_handler`` (an
``## handler`` subsegment with the ``ColdStart`` and ``Service`` annotations, the error as metadata). Only
botocore is patched (every AWS call becomes a subsegment): Powertools' default patches every library the SDK
knows, importing each of them (requests, httplib, sqlite3, ...) into every cold start. Elsewhere (tests, the
command line) the handler runs as is.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

#: Libraries whose calls become X-Ray subsegments. botocore is loaded by every handler anyway.
PATCH_MODULES = ("botocore",)

_LOCK = threading.Lock()
_TRACER: Any = None
_CHECKED = False
F = TypeVar("F", bound=Callable[..., Any])


def tracing_available() -> bool:
    """In Lambda, tracing not disabled (``POWERTOOLS_TRACE_DISABLED``) and the X-Ray SDK installed."""
    import importlib.util

    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return in_lambda and not disabled and importlib.util.find_spec("aws_xray_sdk") is not None


def get_tracer() -> Any:
    """The process's Powertools ``Tracer`` (botocore patched), or None when tracing is not available."""
    global _TRACER, _CHECKED
    with _LOCK:
        if not _CHECKED:
            _CHECKED = True
            if tracing_available():
                from aws_lambda_powertools import Tracer

                _TRACER = Tracer(patch_modules=PATCH_MODULES)
        return _TRACER


def reset() -> None:
    """Forget the tracer (tests that change the environment)."""
    global _TRACER, _CHECKED
    with _LOCK:
        _TRACER, _CHECKED = None, False


def traced(handler: F) -> F:
    """Run ``handler`` inside Powertools Tracer's ``capture_lambda_handler`` when tracing is available. The
    response is not put in the trace (state and step data: large, and the user's), errors are."""
    wrapped: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def run(event: Any, context: Any = None) -> Any:
        if not wrapped:
            tracer = get_tracer()
            wrapped.append(handler if tracer is None
                           else tracer.capture_lambda_handler(handler, capture_response=False))
        return wrapped[0](event, context)

    return run  # type: ignore[return-value]
