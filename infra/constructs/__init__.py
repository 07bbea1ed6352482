"""The constructs the COAFI stack composes."""

from infra.constructs.actions import Actions
from infra.constructs.core import Core
from infra.constructs.function import CoafiFunction
from infra.constructs.workflow import WorkflowConstruct

__all__ = ["Actions", "CoafiFunction", "Core", "WorkflowConstruct"]
