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


class InvalidStateOperation(PermanentError):
    """The core state function received an event that is not a COAFI state operation (start, finish, decide,
    step); the message names every field that is wrong. Raised before anything is written."""


def validation_problems(error: Exception, limit: int = 10, root: str = "event") -> str:
    """A pydantic ``ValidationError`` as ``"field.path (what is wrong); ..."`` (at most ``limit`` problems; the
    offending values are not repeated: they may be large or private). A problem with the whole value is named
    ``root``; a missing or unknown union tag by its discriminator field (e.g. ``op``)."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)

    def where(problem: dict[str, object]) -> str:
        path = ".".join(str(p) for p in problem.get("loc", ()) or ())  # type: ignore[attr-defined]
        context = problem.get("ctx")
        if problem.get("type") in ("union_tag_not_found", "union_tag_invalid") and isinstance(context, dict):
            tag = str(context.get("discriminator", "")).strip("'")
            return f"{path}.{tag}" if path else tag
        return path or root

    problems = [f"{where(e)} ({e.get('msg', 'invalid')})" for e in errors()]
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
