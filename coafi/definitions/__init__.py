"""Workflow definitions: the format (pydantic models) and the loader.

The names below are loaded on first access (PEP 562): the functions import ``coafi.definitions.waits`` (a signal
name's pattern) and must not pay for the loader and every model of the format (~20-30 ms of a cold start,
BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coafi.definitions.errors import DefinitionError, Problem
    from coafi.definitions.loader import (
        definition_files,
        discover_actions,
        find_project_root,
        load_definition,
        load_definitions,
        validate_definition,
    )
    from coafi.definitions.models import RetryPolicy, WorkflowDefinition, WorkflowStep

#: Each name and the module defining it.
_SOURCES = {
    "DefinitionError": "errors", "Problem": "errors",
    "definition_files": "loader", "discover_actions": "loader", "find_project_root": "loader",
    "load_definition": "loader", "load_definitions": "loader", "validate_definition": "loader",
    "RetryPolicy": "models", "WorkflowDefinition": "models", "WorkflowStep": "models",
}

__all__ = [
    "DefinitionError",
    "Problem",
    "RetryPolicy",
    "WorkflowDefinition",
    "WorkflowStep",
    "definition_files",
    "discover_actions",
    "find_project_root",
    "load_definition",
    "load_definitions",
    "validate_definition",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'coafi.definitions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"coafi.definitions.{source}"), name)
    globals()[name] = value
    return value
