"""What every command does with the errors a user can cause (or fix): a message and an exit code, never a
traceback. ``--json`` commands also print the error as JSON on stdout, for scripts."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

Run = Callable[[argparse.Namespace], int]


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def validation_message(exc: Any) -> str:
    """pydantic's errors as ``field.path: problem; ...``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def guarded(user_errors: Callable[[], tuple[type[Exception], ...]]) -> Callable[[Run], Run]:
    """Decorate a command: ``user_errors()`` (imported lazily, to keep ``coafi --help`` fast) exit 1 with their
    message; a missing or unreachable stack (DeployError) and AWS refusals exit 2."""

    def decorate(run: Run) -> Run:
        @functools.wraps(run)
        def wrapper(args: argparse.Namespace) -> int:
            from botocore.exceptions import BotoCoreError, ClientError
            from pydantic import ValidationError

            from coafi.deploy import DeployError

            try:
                return run(args)
            except DeployError as exc:
                return fail(str(exc), 2)
            except ValidationError as exc:
                return _user_error(args, exc, validation_message(exc))
            except user_errors() as exc:
                return _user_error(args, exc, str(exc))
            except (ClientError, BotoCoreError) as exc:
                return fail(f"AWS refused: {exc}", 2)

        return wrapper

    return decorate


def _user_error(args: argparse.Namespace, exc: Exception, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": type(exc).__name__, "message": message,
                                    "field": getattr(exc, "field", None)}}, indent=2))
    return fail(message)
