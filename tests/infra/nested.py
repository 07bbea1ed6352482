"""The app's templates as one: each workflow's nested stack (infra/workflow_stacks.py) merged into the app's
template, so the infra tests read every resource where it would be if there were one stack.

Each nested stack parameter (``{"Ref": "referenceto..."}``) is replaced by what the app's stack passes to it,
and each ``{"Fn::GetAtt": [<nested stack>, "Outputs.X"]}`` by the nested stack's output X, until none is left:
a policy in a nested stack then names the app's function as ``{"Fn::GetAtt": [<function>, "Arn"]}`` exactly
as before. Logical ids stay unique across templates (the workflow id is part of every nested logical id);
merging checks it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import NestedStack, Stack

NESTED_OUTPUT = "Outputs."


def _replace(node: Any, lookup: Any) -> tuple[Any, bool]:
    """``node`` with every reference ``lookup`` resolves replaced; whether anything was."""
    replaced = lookup(node)
    if replaced is not None:
        return replaced, True
    changed = False
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out[key], hit = _replace(value, lookup)
            changed |= hit
        return out, changed
    if isinstance(node, list):
        items = []
        for value in node:
            item, hit = _replace(value, lookup)
            items.append(item)
            changed |= hit
        return items, changed
    return node, False


def flattened(stack: Stack, assembly_dir: Path, template: dict[str, Any]) -> tuple[dict[str, Any], list[Path]]:
    """The merged template of ``stack`` and its nested stacks, and every template file (``stack``'s first)."""
    merged = json.loads(json.dumps(template))
    files: list[Path] = []
    outputs: dict[str, dict[str, Any]] = {}
    nested_resources: dict[str, Any] = {}
    for construct in stack.node.find_all():
        if not isinstance(construct, NestedStack) or construct.nested_stack_resource is None:
            continue
        logical_id = stack.resolve(stack.get_logical_id(construct.nested_stack_resource))
        path = assembly_dir / construct.template_file
        files.append(path)
        nested = json.loads(path.read_text())
        passed = merged["Resources"][logical_id]["Properties"].get("Parameters", {})

        def parameter(node: Any, passed: dict[str, Any] = passed) -> Any:
            if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in passed:
                return passed[node["Ref"]]
            return None

        body, _ = _replace({"Resources": nested["Resources"], "Outputs": nested.get("Outputs", {})}, parameter)
        outputs[logical_id] = {name: output["Value"] for name, output in body["Outputs"].items()}
        for resource_id, resource in body["Resources"].items():
            assert resource_id not in merged["Resources"] and resource_id not in nested_resources, (
                f"logical id {resource_id} in two templates")
            nested_resources[resource_id] = resource
    merged["Resources"].update(nested_resources)

    def nested_output(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
            target, attribute = node["Fn::GetAtt"]
            if target in outputs and isinstance(attribute, str) and attribute.startswith(NESTED_OUTPUT):
                return outputs[target][attribute[len(NESTED_OUTPUT):]]
        return None

    changed = True
    while changed:
        merged, changed = _replace(merged, nested_output)
    return merged, files
