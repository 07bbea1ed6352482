"""The workflow registry on moto's DynamoDB: versions, the live pointer, precise errors for unknown ones."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from coafi import aws
from coafi.engine.errors import VersionNotRegistered, WorkflowNotRegistered
from coafi.engine.registrar import RegistrarProperties, handle, remove, sync
from coafi.engine.registry import REGISTRY_PK, WorkflowRegistry
from coafi.state import schema

TABLE = "engine-registry-test"
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Coafi-orders"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkflowRegistry]:
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws._cached.cache_clear()
    with mock_aws():
        schema.create_table(aws.client("dynamodb"), TABLE)
        yield WorkflowRegistry(TABLE)
    aws._cached.cache_clear()


def test_register_makes_the_version_live_and_resolve_starts_it(registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN + ":1", source="test")
    registry.register_workflow("orders", "1.1.0", ARN + ":2", source="test")
    assert registry.resolve("orders").version == "1.1.0"
    assert registry.resolve("orders").stateMachineArn == ARN + ":2"
    assert registry.resolve("orders", "1.0.0").stateMachineArn == ARN + ":1"
    workflow = registry.get_workflow("orders")
    assert [v.version for v in workflow.versions] == ["1.0.0", "1.1.0"]
    assert [v.live for v in workflow.versions] == [False, True]


def test_a_version_registered_without_going_live_leaves_the_live_one(registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN + ":1")
    registry.register_workflow("orders", "2.0.0-beta", ARN + ":2", make_live=False)
    assert registry.resolve("orders").version == "1.0.0"
    registry.set_live("orders", "2.0.0-beta")
    assert registry.resolve("orders").version == "2.0.0-beta"


def test_unknown_workflows_and_versions_are_precise_errors(registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN)
    with pytest.raises(WorkflowNotRegistered, match=r"'invoices' is not registered \(registered: orders\)"):
        registry.resolve("invoices")
    with pytest.raises(VersionNotRegistered, match=r"no registered version '9\.9' \(registered: 1\.0\.0\)"):
        registry.resolve("orders", "9.9")
    with pytest.raises(VersionNotRegistered):
        registry.set_live("orders", "9.9")
    with pytest.raises(WorkflowNotRegistered):
        registry.unregister_workflow("invoices")


def test_unregistering_the_live_version_leaves_no_live_version(registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN + ":1", make_live=False)
    registry.register_workflow("orders", "1.1.0", ARN + ":2")
    assert registry.unregister_workflow("orders", "1.1.0") == ["1.1.0"]
    with pytest.raises(VersionNotRegistered, match=r"no live version .*registered versions: 1\.0\.0"):
        registry.resolve("orders")
    assert registry.resolve("orders", "1.0.0").stateMachineArn == ARN + ":1"
    assert registry.unregister_workflow("orders") == ["1.0.0"]
    assert registry.list_workflows() == []


def test_registry_items_stay_in_their_own_partition(registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN)
    items = aws.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert {item["PK"]["S"] for item in items} == {REGISTRY_PK}
    assert not any(key.startswith("idx") for item in items for key in item)  # never in the execution indexes


def test_the_registrar_registers_deployed_workflows_and_removes_them_on_stack_deletion(
        registry: WorkflowRegistry) -> None:
    properties = RegistrarProperties.model_validate({"Source": "stack:Coafi", "Workflows": {
        "orders": {"stateMachineArn": ARN, "version": "3.0.0", "definitionSha256": "ab" * 32},
    }})
    assert sync(registry, None, properties, publish=False) == {"orders": ARN}
    live = registry.resolve("orders")
    assert (live.version, live.source, live.definitionSha256) == ("3.0.0", "stack:Coafi", "ab" * 32)
    assert remove(registry, properties) == ["orders"]
    assert remove(registry, properties) == []  # already gone: nothing to do, no error



class Publisher:
    """moto has no PublishStateMachineVersion: this stands in for it (the e2e tier publishes on LocalStack)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def publish_state_machine_version(self, **kwargs: str) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"stateMachineVersionArn": f"{kwargs['stateMachineArn']}:{len(self.calls)}"}


def test_a_sync_request_registers_published_versions_from_the_environment(
        registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    properties = {"Source": "stack:Coafi", "Workflows": {
        "orders": {"stateMachineArn": ARN, "version": "3.0.0", "definitionSha256": "cd" * 32}}}
    monkeypatch.setenv("COAFI_DEPLOYED_WORKFLOWS", json.dumps(properties))
    publisher = Publisher()
    answer = handle({"RequestType": "Sync"}, registry, publisher)
    assert answer["Status"] == "SUCCESS"
    assert publisher.calls == [{"stateMachineArn": ARN, "description": "3.0.0 (cdcdcdcdcdcd)"}]
    assert registry.resolve("orders").stateMachineArn == ARN + ":1"
    assert handle({"RequestType": "Delete"}, registry, publisher)["Data"] == {"Unregistered": "orders"}
    with pytest.raises(WorkflowNotRegistered):
        registry.resolve("orders")


def test_an_update_unregisters_the_workflows_the_stack_no_longer_deploys(registry: WorkflowRegistry) -> None:
    def props(*ids: str) -> dict[str, object]:
        return {"Source": "stack:Coafi", "Workflows": {
            i: {"stateMachineArn": f"{ARN}-{i}", "version": "1"} for i in ids}}

    publisher = Publisher()
    handle({"RequestType": "Create", "ResourceProperties": props("a", "b")}, registry, publisher)
    answer = handle({"RequestType": "Update", "ResourceProperties": props("a"),
                     "OldResourceProperties": props("a", "b")}, registry, publisher)
    assert answer["Data"]["Unregistered"] == "b"
    assert [w.workflowId for w in registry.list_workflows()] == ["a"]
