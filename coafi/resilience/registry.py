"""Error policies registered in the state table (the design's ``registerErrorPolicy`` / ``getErrorPolicy``).

| item | PK | SK | attributes |
|---|---|---|---|
| policy | ``ERRORPOLICY`` | ``POLICY#<id>`` | policyJson, source, updatedAt |
| a workflow's policies | ``ERRORPOLICY`` | ``WORKFLOW#<workflowId>`` | policyIds (in order), updatedAt |

``coafi deploy`` registers the project's policies after the stack is deployed (:func:`register_project_policies`:
policies of the deployed definitions, inline and from ``statemachines/policies/``; items of policies and workflows
that are gone are deleted). One partition, read with one Query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coafi.resilience.classification import category_of_name
from coafi.resilience.policies import ErrorPolicy

PARTITION = "ERRORPOLICY"
POLICY_PREFIX = "POLICY#"
WORKFLOW_PREFIX = "WORKFLOW#"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PolicyRegistry:
    """Error policies in the state table (default: the function's ``COAFI_TABLE_NAME``)."""

    def __init__(self, table_name: str | None = None) -> None:
        if table_name is None:
            from coafi.config import function_settings

            table_name = function_settings().table_name
        self.table_name = table_name

    def _client(self) -> Any:
        from coafi import aws

        return aws.client("dynamodb")

    def register_error_policy(self, policy: ErrorPolicy, *, source: str = "") -> None:
        self._client().put_item(TableName=self.table_name, Item={
            "PK": {"S": PARTITION}, "SK": {"S": POLICY_PREFIX + policy.id},
            "policyJson": {"S": policy.model_dump_json()}, "source": {"S": source}, "updatedAt": {"S": _now()},
        })

    def register_workflow(self, workflow_id: str, policy_ids: list[str]) -> None:
        self._client().put_item(TableName=self.table_name, Item={
            "PK": {"S": PARTITION}, "SK": {"S": WORKFLOW_PREFIX + workflow_id},
            "policyIds": {"L": [{"S": p} for p in policy_ids]}, "updatedAt": {"S": _now()},
        })

    def _items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "KeyConditionExpression": "PK = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": PARTITION}}, "ConsistentRead": True}
        while True:
            page = self._client().query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_policies(self) -> list[ErrorPolicy]:
        return [ErrorPolicy.model_validate_json(i["policyJson"]["S"]) for i in self._items()
                if i["SK"]["S"].startswith(POLICY_PREFIX)]

    def workflow_policies(self, workflow_id: str) -> list[ErrorPolicy]:
        """The policies of a workflow, in its definition's order."""
        items = {i["SK"]["S"]: i for i in self._items()}
        binding = items.get(WORKFLOW_PREFIX + workflow_id)
        if binding is None:
            return []
        ids = [v["S"] for v in binding.get("policyIds", {}).get("L", [])]
        return [ErrorPolicy.model_validate_json(items[POLICY_PREFIX + i]["policyJson"]["S"])
                for i in ids if POLICY_PREFIX + i in items]

    def get_error_policy(self, error_type: str, context_type: str = "*", *, workflow_id: str | None = None
                         ) -> ErrorPolicy | None:
        """The first policy (of a workflow, or of all in id order) whose errorTypes match ``error_type`` (a name,
        or a category) and whose contextTypes include ``context_type`` ('*' matches any policy)."""
        policies = self.workflow_policies(workflow_id) if workflow_id else self.list_policies()
        category = category_of_name(error_type)
        for policy in policies:
            if context_type != "*" and "*" not in policy.contextTypes and context_type not in policy.contextTypes:
                continue
            if error_type in policy.errorTypes or policy.matches_error(error_type, category):
                return policy
        return None

    def sync(self, policies: Mapping[str, tuple[ErrorPolicy, str]], workflows: Mapping[str, list[str]]) -> None:
        """Make the partition hold exactly these policies (id -> (policy, source)) and workflows' policy ids."""
        wanted = {POLICY_PREFIX + i for i in policies} | {WORKFLOW_PREFIX + w for w in workflows}
        for _, (policy, source) in sorted(policies.items(), key=lambda kv: kv[0]):
            self.register_error_policy(policy, source=source)
        for workflow_id, ids in sorted(workflows.items()):
            self.register_workflow(workflow_id, ids)
        for item in self._items():
            if item["SK"]["S"] not in wanted:
                self._client().delete_item(TableName=self.table_name, Key={"PK": item["PK"], "SK": item["SK"]})

    # the design's names
    registerErrorPolicy = register_error_policy
    getErrorPolicy = get_error_policy


def collect(definitions: Iterable[Any], sources: Mapping[str, str] | None = None
            ) -> tuple[dict[str, tuple[ErrorPolicy, str]], dict[str, list[str]]]:
    """The policies of loaded definitions by id, and each workflow's policy ids. Two different policies with one
    id (inline in two workflows) raise ValueError naming both workflows."""
    policies: dict[str, tuple[ErrorPolicy, str]] = {}
    owners: dict[str, str] = {}
    workflows: dict[str, list[str]] = {}
    for definition in definitions:
        ids: list[str] = []
        for policy in definition.policies:
            if not isinstance(policy, ErrorPolicy):
                continue
            known = policies.get(policy.id)
            if known is not None and known[0] != policy:
                raise ValueError(f"error policy id '{policy.id}' names two different policies (workflows "
                                 f"'{owners[policy.id]}' and '{definition.id}'); give one another id")
            source = (sources or {}).get(policy.id, f"workflow {definition.id}")
            policies.setdefault(policy.id, (policy, source))
            owners.setdefault(policy.id, definition.id)
            ids.append(policy.id)
        workflows[definition.id] = ids
    return policies, workflows


def register_project_policies(project_root: Path, table_name: str, definitions_dir: Path | None = None) -> int:
    """Register the policies of the project's definitions (``statemachines/``) in the table; how many."""
    from coafi.definitions import load_definitions
    from coafi.resilience.loading import POLICIES_FOLDER, load_policy_library

    folder = definitions_dir or project_root / "statemachines"
    if not folder.is_dir():
        return 0
    definitions = load_definitions([folder])
    library = load_policy_library(folder / POLICIES_FOLDER)
    sources = {pid: str(path.relative_to(project_root)) if path.is_relative_to(project_root) else str(path)
               for pid, (_, path) in library.policies.items()}
    policies, workflows = collect(definitions, sources)
    PolicyRegistry(table_name).sync(policies, workflows)
    return len(policies)


def dumps(policies: Iterable[ErrorPolicy]) -> str:
    return json.dumps([p.model_dump(mode="json") for p in policies], indent=2)
