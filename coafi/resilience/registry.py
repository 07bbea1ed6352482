"""Error policies registered in the state table (the design's ``registerErrorPolicy`` / ``getErrorPolicy``).

| item | PK | SK | attributes |
|---|---|---|---|
| policy | ``ERRORPOLICY`` | ``POLICY#<id>`` | policyJson, source, updatedAt |
| a workflow's policies | ``ERRORPOLICY`` | ``WORKFLOW#<workflowId>`` | policyIds (in order), updatedAt |

One partition, read with one Query. Nothing in the runtime path reads it: the compiler puts a step's Retry/Catch
into the state machine and its escalation thresholds into the step event (``context.errorPolicies``), and circuit
breakers are configured in the action's code. The registry is the deployed policies' queryable record
(``get_error_policy``, ``workflow_policies``) for operators and code that wants it.

**Who writes it: the deployment.** The synthesized app computes the policy set (:func:`policy_set`: the policies
of the deployed definitions, inline and from ``<definitions>/policies/``, and each workflow's ordered policy ids)
and passes it, as JSON text, in the ``ErrorPolicies`` property of the stack's one ``Custom::CoafiWorkflowRegistry``
resource (``infra/constructs/engine.py``). Its function (``coafi.engine.registrar``) applies it on every
Create/Update: :meth:`PolicyRegistry.sync` makes the partition hold exactly that set (items of policies and
workflows no longer deployed are deleted, so nothing lingers; a rollback is an Update back to the old set). On
Delete it deletes the items the set names. ``coafi deploy --local`` against a LocalStack that skipped the custom
resource sends the same set, read from the deployed template, in a ``Sync`` request to the same function; and
a project without a deployment (tests, scripts) uses :func:`register_project_policies` (the same
:func:`policy_set`, the same ``sync``).

No races: the whole partition belongs to that single resource of the stack (one stack per state table), and
CloudFormation never runs two operations on one resource at once. A policy shared by several workflows
(``statemachines/policies/``) is one item, referenced by each workflow's ``policyIds``; it goes only when no
deployed workflow names it any more, because every write states the complete set, not one workflow's share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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

    def apply(self, policies: PolicySet) -> None:
        """Make the partition hold exactly this policy set (a deploy's Create / Update / Sync)."""
        self.sync({pid: (p.policy, p.source) for pid, p in policies.policies.items()}, policies.workflows)

    def remove(self, policies: PolicySet) -> None:
        """Delete the items of this policy set (the stack's deletion); missing ones are no error."""
        keys = [POLICY_PREFIX + pid for pid in sorted(policies.policies)] + \
               [WORKFLOW_PREFIX + wid for wid in sorted(policies.workflows)]
        for sk in keys:
            self._client().delete_item(TableName=self.table_name, Key={"PK": {"S": PARTITION}, "SK": {"S": sk}})

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


class DeployedPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: ErrorPolicy
    source: str = ""


class PolicySet(BaseModel):
    """What a deploy registers: every deployed policy by id, and each deployed workflow's policy ids in order
    (the ``ErrorPolicies`` property of the stack's workflow registry custom resource, as JSON text)."""

    model_config = ConfigDict(extra="forbid")

    policies: dict[str, DeployedPolicy] = Field(default_factory=dict)
    workflows: dict[str, list[str]] = Field(default_factory=dict)

    def to_json(self) -> str:
        """Stable text (sorted ids), so an unchanged project synthesizes an unchanged property."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))


def policy_set(definitions: Iterable[Any], definitions_dir: Path | None = None) -> PolicySet:
    """The policy set of loaded definitions: what the stack registers (synth) and ``register_project_policies``
    registers. A library policy's source is its file relative to the definitions folder's parent
    (``statemachines/policies/x.yaml``), never an absolute path (the template must not depend on the machine)."""
    sources: dict[str, str] = {}
    if definitions_dir is not None:
        from coafi.resilience.loading import POLICIES_FOLDER, load_policy_library

        base = definitions_dir.parent
        for pid, (_, path) in load_policy_library(definitions_dir / POLICIES_FOLDER).policies.items():
            sources[pid] = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
    policies, workflows = collect(definitions, sources)
    return PolicySet(
        policies={pid: DeployedPolicy(policy=policy, source=source)
                  for pid, (policy, source) in sorted(policies.items())},
        workflows=dict(sorted(workflows.items())),
    )


def register_project_policies(project_root: Path, table_name: str, definitions_dir: Path | None = None) -> int:
    """Register the policies of the project's definitions (``statemachines/``) in the table, as a deploy does
    (the in-process tier's "deploy"); how many."""
    from coafi.definitions import load_definitions

    folder = definitions_dir or project_root / "statemachines"
    if not folder.is_dir():
        return 0
    policies = policy_set(load_definitions([folder]), folder)
    PolicyRegistry(table_name).apply(policies)
    return len(policies.policies)


def dumps(policies: Iterable[ErrorPolicy]) -> str:
    return json.dumps([p.model_dump(mode="json") for p in policies], indent=2)
