"""The workflow registry: which workflows and versions are deployed, and which version of each is live.

Items live in the state table under one partition of their own (``PK = REGISTRY``; the state layer's keys all
start with ``EXEC#``, the task store's with ``TASK#``/``WORKERS``/``IDEMPOTENCY#``):

| item | SK | attributes |
|---|---|---|
| a version | ``WF#<workflowId>#V#<version>`` | workflowId, version, stateMachineArn, definitionSha256, registeredAt |
| the live pointer | ``WF#<workflowId>#LIVE`` | workflowId, version, stateMachineArn, updatedAt |

``stateMachineArn`` of a version is the published Step Functions version's ARN when the deploy published one
(so a named old version runs its own definition), else the state machine's. A registry is small (workflows x
versions), so listing it is one Query of that partition. The live pointer is written in one transaction with
its version item (register) or conditional on that item existing (set_live), so it never names a version that
was unregistered concurrently.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coafi import aws
from coafi.engine.errors import VersionNotRegistered, WorkflowNotRegistered
from coafi.state.codec import now_iso, plain, s

REGISTRY_PK = "REGISTRY"
#: The leading key a function that only maintains the registry may touch (IAM dynamodb:LeadingKeys).
REGISTRY_LEADING_KEYS = (REGISTRY_PK,)
_LIVE = "LIVE"


def version_sk(workflow_id: str, version: str) -> str:
    return f"WF#{workflow_id}#V#{version}"


def live_sk(workflow_id: str) -> str:
    return f"WF#{workflow_id}#{_LIVE}"


class RegisteredVersion(BaseModel):
    """One registered version of a workflow: what ``startWorkflow`` starts for it."""

    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True, extra="ignore")

    workflowId: str = Field(min_length=1)
    version: str = Field(min_length=1)
    stateMachineArn: str = Field(min_length=1, description="a state machine, or one of its published versions")
    definitionSha256: str = ""
    registeredAt: datetime | None = None
    source: str = Field("", description="who registered it, e.g. 'stack:Coafi' for a deploy")
    live: bool = False


class RegisteredWorkflow(BaseModel):
    model_config = ConfigDict(defer_build=True)

    workflowId: str
    liveVersion: str | None = None
    versions: list[RegisteredVersion] = Field(default_factory=list)

    def live(self) -> RegisteredVersion | None:
        return next((v for v in self.versions if v.version == self.liveVersion), None)


class WorkflowRegistry:
    """registerWorkflow / unregisterWorkflow and the look-ups ``startWorkflow`` needs."""

    def __init__(self, table_name: str, *, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    # -- writes ---------------------------------------------------------------------------------------
    def register_workflow(
        self, workflow_id: str, version: str, state_machine_arn: str, *, make_live: bool = True,
        definition_sha256: str = "", source: str = "",
    ) -> RegisteredVersion:
        """Record (or replace) ``version`` of ``workflow_id`` and, with ``make_live``, make it the live one."""
        entry = RegisteredVersion(workflowId=workflow_id, version=version, stateMachineArn=state_machine_arn,
                                  definitionSha256=definition_sha256, registeredAt=now_iso(), source=source,
                                  live=make_live)
        item = {
            "PK": s(REGISTRY_PK), "SK": s(version_sk(workflow_id, version)), "kind": s("version"),
            "workflowId": s(workflow_id), "version": s(version), "stateMachineArn": s(state_machine_arn),
            "definitionSha256": s(definition_sha256), "registeredAt": s(now_iso()), "source": s(source),
        }
        writes: list[dict[str, Any]] = [{"Put": {"TableName": self.table_name, "Item": item}}]
        if make_live:
            writes.append({"Put": {"TableName": self.table_name, "Item": self._live_item(entry)}})
        self.client.transact_write_items(TransactItems=writes)
        return entry

    def set_live(self, workflow_id: str, version: str) -> RegisteredVersion:
        """Make an already registered version the live one."""
        entry = self.get_version(workflow_id, version)
        try:
            self.client.transact_write_items(TransactItems=[
                {"ConditionCheck": {"TableName": self.table_name,
                                    "Key": {"PK": s(REGISTRY_PK), "SK": s(version_sk(workflow_id, version))},
                                    "ConditionExpression": "attribute_exists(PK)"}},
                {"Put": {"TableName": self.table_name, "Item": self._live_item(entry)}},
            ])
        except self.client.exceptions.TransactionCanceledException:
            raise VersionNotRegistered(workflow_id, version, self._version_names(workflow_id)) from None
        return entry.model_copy(update={"live": True})

    def unregister_workflow(self, workflow_id: str, version: str | None = None) -> list[str]:
        """Remove one version (the live pointer too, if it named it) or, without ``version``, the whole
        workflow. Returns the versions removed; an unknown workflow or version is an error."""
        workflow = self.get_workflow(workflow_id)
        if version is not None and version not in [v.version for v in workflow.versions]:
            raise VersionNotRegistered(workflow_id, version, [v.version for v in workflow.versions])
        removed = [version] if version is not None else [v.version for v in workflow.versions]
        keys = [version_sk(workflow_id, v) for v in removed]
        if version is None or workflow.liveVersion == version:
            keys.append(live_sk(workflow_id))
        for key in keys:
            self.client.delete_item(TableName=self.table_name, Key={"PK": s(REGISTRY_PK), "SK": s(key)})
        return removed

    # -- reads ----------------------------------------------------------------------------------------
    def list_workflows(self) -> list[RegisteredWorkflow]:
        """Every registered workflow with its versions (registration order) and live version."""
        return self._fold(self._query(None))

    def get_workflow(self, workflow_id: str) -> RegisteredWorkflow:
        found = self._fold(self._query(f"WF#{workflow_id}#"))
        for workflow in found:
            if workflow.workflowId == workflow_id:
                return workflow
        raise WorkflowNotRegistered(workflow_id, [w.workflowId for w in self.list_workflows()])

    def get_version(self, workflow_id: str, version: str) -> RegisteredVersion:
        item = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key={"PK": s(REGISTRY_PK), "SK": s(version_sk(workflow_id, version))}).get("Item")
        if not item:
            self.get_workflow(workflow_id)  # an unknown workflow is the more precise error
            raise VersionNotRegistered(workflow_id, version, self._version_names(workflow_id))
        return RegisteredVersion.model_validate(plain(item))

    def resolve(self, workflow_id: str, version: str | None = None) -> RegisteredVersion:
        """What to start: the named version, or the live one."""
        if version is not None:
            return self.get_version(workflow_id, version)
        item = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key={"PK": s(REGISTRY_PK), "SK": s(live_sk(workflow_id))}).get("Item")
        if not item:
            workflow = self.get_workflow(workflow_id)
            raise VersionNotRegistered(workflow_id, None, [v.version for v in workflow.versions])
        live = plain(item)
        return self.get_version(workflow_id, str(live["version"])).model_copy(update={"live": True})

    # -- helpers --------------------------------------------------------------------------------------
    def _live_item(self, entry: RegisteredVersion) -> dict[str, Any]:
        return {
            "PK": s(REGISTRY_PK), "SK": s(live_sk(entry.workflowId)), "kind": s("live"),
            "workflowId": s(entry.workflowId), "version": s(entry.version),
            "stateMachineArn": s(entry.stateMachineArn), "updatedAt": s(now_iso()),
        }

    def _version_names(self, workflow_id: str) -> list[str]:
        return [version.version for workflow in self._fold(self._query(f"WF#{workflow_id}#"))
                if workflow.workflowId == workflow_id for version in workflow.versions]

    def _query(self, prefix: str | None) -> list[dict[str, Any]]:
        condition = "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else "")
        values: dict[str, Any] = {":pk": s(REGISTRY_PK)}
        if prefix:
            values[":prefix"] = s(prefix)
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "KeyConditionExpression": condition,
                                  "ExpressionAttributeValues": values, "ConsistentRead": True}
        while True:
            page = self.client.query(**kwargs)
            items.extend(plain(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _fold(items: list[dict[str, Any]]) -> list[RegisteredWorkflow]:
        workflows: dict[str, RegisteredWorkflow] = {}
        for item in items:
            workflow = workflows.setdefault(item["workflowId"], RegisteredWorkflow(workflowId=item["workflowId"]))
            if item.get("kind") == "live":
                workflow.liveVersion = item["version"]
            else:
                workflow.versions.append(RegisteredVersion.model_validate(item))
        for workflow in workflows.values():
            workflow.versions.sort(key=lambda v: v.registeredAt.isoformat() if v.registeredAt else "")
            for version in workflow.versions:
                version.live = version.version == workflow.liveVersion
        return sorted(workflows.values(), key=lambda w: w.workflowId)

    # the design's names
    registerWorkflow = register_workflow
    unregisterWorkflow = unregister_workflow
