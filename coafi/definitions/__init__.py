"""Workflow definitions: the format (pydantic models) and the loader."""

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
