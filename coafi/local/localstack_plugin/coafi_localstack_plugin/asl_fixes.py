"""Fixes to the Step Functions interpreter shared by LocalStack and moto, where it departs from AWS.

Kept free of LocalStack imports: COAFI's in-process test tier applies the same fix to moto's port of the
interpreter (``coafi.testing``), and the LocalStack hook in ``hooks.py`` applies it to LocalStack's.

Parallel re-raises a failed branch's error as a *custom* error name, whose constructor rejects names in the
reserved ``States.`` namespace. So a branch failing with ``States.Timeout``, ``States.TaskFailed`` (a failed
sub-workflow) or ``States.Runtime`` crashed the whole execution with a ValueError instead of reaching the
Parallel's ``Catch``, as it does on AWS. The fix re-raises such errors under their States error name.
"""

from __future__ import annotations

import importlib
from typing import Any

_PARALLEL_MODULES = (
    "asl.component.state.state_execution.state_parallel.branches_decl",  # LocalStack
    "asl.component.state.exec.state_parallel.branches_decl",  # moto
)


def fix_parallel_error_names(interpreter_package: str) -> bool:
    """Patch the interpreter under ``interpreter_package`` (e.g. ``localstack.services.stepfunctions`` or
    ``moto.stepfunctions.parser``). Returns whether a Parallel implementation was found and patched."""
    error_names = f"{interpreter_package}.asl.component.common.error_name"
    custom = importlib.import_module(f"{error_names}.custom_error_name").CustomErrorName
    states = importlib.import_module(f"{error_names}.states_error_name").StatesErrorName

    def error_name(error_name: str | None = None) -> Any:
        if error_name and error_name.startswith("States."):
            try:
                return states.from_name(error_name)
            except ValueError:
                pass
        return custom(error_name=error_name)

    patched = False
    for suffix in _PARALLEL_MODULES:
        try:
            module = importlib.import_module(f"{interpreter_package}.{suffix}")
        except ImportError:
            continue
        module.CustomErrorName = error_name  # type: ignore[attr-defined]
        patched = True
    return patched
