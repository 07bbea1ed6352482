"""The compiler: workflow definitions to Amazon States Language, and diagrams of them."""

from coafi.compiler.asl import ArnRef, CompiledWorkflow, compile_workflow, placeholder_for_action
from coafi.compiler.layout import critical_path

__all__ = ["ArnRef", "CompiledWorkflow", "compile_workflow", "critical_path", "placeholder_for_action"]
