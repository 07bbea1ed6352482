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
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Coafi_orders"


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


def test_a_sync_request_registers_published_versions_of_the_properties_it_carries(
        registry: WorkflowRegistry) -> None:
    properties = {"Source": "stack:Coafi", "Workflows": {
        "orders": {"stateMachineArn": ARN, "version": "3.0.0", "definitionSha256": "cd" * 32}}}
    publisher = Publisher()
    answer = handle({"RequestType": "Sync", "ResourceProperties": properties}, registry, publisher)
    assert answer["Status"] == "SUCCESS"
    assert publisher.calls == [{"stateMachineArn": ARN, "description": "3.0.0 (cdcdcdcdcdcd)"}]
    assert registry.resolve("orders").stateMachineArn == ARN + ":1"
    assert handle({"RequestType": "Delete", "ResourceProperties": properties}, registry, publisher)["Data"] == \
        {"Unregistered": "orders"}
    with pytest.raises(WorkflowNotRegistered):
        registry.resolve("orders")


def test_a_sync_request_without_properties_is_refused_not_taken_as_an_empty_stack(
        registry: WorkflowRegistry) -> None:
    registry.register_workflow("orders", "1.0.0", ARN + ":1", source="test")
    with pytest.raises(ValueError, match="Sync request without ResourceProperties"):
        handle({"RequestType": "Sync"}, registry, Publisher())
    assert registry.resolve("orders").version == "1.0.0"


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


# -- error policies: registered by the same custom resource ---------------------------------------------------


def policy(pid: str, *error_types: str) -> dict[str, object]:
    return {"id": pid, "errorTypes": list(error_types) or ["transient"], "maxRetries": 1}


def policy_props(workflows: dict[str, list[dict[str, object]]], *, shared: dict[str, str] | None = None
                 ) -> dict[str, object]:
    """Resource properties as the app synthesizes them, for definitions with these (resolved) policies."""
    from coafi.definitions.models import WorkflowDefinition
    from coafi.resilience.registry import policy_set

    definitions = [WorkflowDefinition.model_validate({
        "id": wf, "name": wf, "version": "1", "policies": policies,
        "steps": [{"id": "s", "type": "task", "action": "a"}]}) for wf, policies in workflows.items()]
    text = policy_set(definitions).to_json()
    if shared:  # a library policy's source, as policy_set gives it from the policies/ folder
        data = json.loads(text)
        for pid, source in shared.items():
            data["policies"][pid]["source"] = source
        text = json.dumps(data)
    return {"Source": "stack:Coafi", "ErrorPolicies": text,
            "Workflows": {wf: {"stateMachineArn": f"{ARN}-{wf}", "version": "1"} for wf in workflows}}


def policy_items() -> dict[str, dict[str, object]]:
    items = aws.client("dynamodb").query(
        TableName=TABLE, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "ERRORPOLICY"}})["Items"]
    return {i["SK"]["S"]: i for i in items}


def test_the_registry_resource_registers_error_policies_and_keeps_shared_ones_while_used(
        registry: WorkflowRegistry) -> None:
    from coafi.resilience.registry import PolicyRegistry

    policies = PolicyRegistry(TABLE)
    shared = policy("shared-retry")
    publisher = Publisher()
    create = policy_props({"orders": [shared, policy("orders-only", "permanent") | {"maxRetries": 0}],
                           "invoices": [shared]}, shared={"shared-retry": "statemachines/policies/shared.yaml"})
    assert handle({"RequestType": "Create", "ResourceProperties": create}, registry, publisher, policies
                  )["Data"]["ErrorPolicies"] == "2"
    assert [p.id for p in policies.workflow_policies("orders")] == ["shared-retry", "orders-only"]
    assert [p.id for p in policies.workflow_policies("invoices")] == ["shared-retry"]
    assert policy_items()["POLICY#shared-retry"]["source"] == {"S": "statemachines/policies/shared.yaml"}
    assert policy_items()["POLICY#orders-only"]["source"] == {"S": "workflow orders"}

    # orders goes away: its own policy and its binding go, the shared one stays (invoices still names it)
    update = policy_props({"invoices": [shared]})
    handle({"RequestType": "Update", "ResourceProperties": update, "OldResourceProperties": create},
           registry, publisher, policies)
    assert sorted(policy_items()) == ["POLICY#shared-retry", "WORKFLOW#invoices"]
    assert policies.workflow_policies("orders") == []

    # a rollback is an Update back to the old properties: everything is there again
    handle({"RequestType": "Update", "ResourceProperties": create, "OldResourceProperties": update},
           registry, publisher, policies)
    assert sorted(policy_items()) == ["POLICY#orders-only", "POLICY#shared-retry", "WORKFLOW#invoices",
                                      "WORKFLOW#orders"]

    handle({"RequestType": "Delete", "ResourceProperties": create}, registry, publisher, policies)
    assert policy_items() == {}
    assert registry.list_workflows() == []


def test_a_changed_policy_is_rewritten_and_a_workflow_without_policies_has_an_empty_binding(
        registry: WorkflowRegistry) -> None:
    from coafi.resilience.registry import PolicyRegistry

    policies = PolicyRegistry(TABLE)
    first = policy_props({"orders": [policy("retry-it")]})
    handle({"RequestType": "Create", "ResourceProperties": first}, registry, Publisher(), policies)
    second = policy_props({"orders": [policy("retry-it") | {"maxRetries": 4}], "plain": []})
    handle({"RequestType": "Update", "ResourceProperties": second, "OldResourceProperties": first},
           registry, Publisher(), policies)
    assert [p.maxRetries for p in policies.workflow_policies("orders")] == [4]
    assert policy_items()["WORKFLOW#plain"]["policyIds"] == {"L": []}


def test_a_request_without_error_policies_leaves_the_partition_alone(registry: WorkflowRegistry) -> None:
    from coafi.resilience.registry import PolicyRegistry

    policies = PolicyRegistry(TABLE)
    handle({"RequestType": "Create", "ResourceProperties": policy_props({"orders": [policy("keep-me")]})},
           registry, Publisher(), policies)
    older = {"Source": "stack:Coafi", "Workflows": {"orders": {"stateMachineArn": ARN, "version": "1"}}}
    handle({"RequestType": "Update", "ResourceProperties": older}, registry, Publisher(), policies)
    assert [p.id for p in policies.workflow_policies("orders")] == ["keep-me"]


class Responses:
    """Stands in for CloudFormation's pre-signed response URL: the bodies PUT to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import urllib.request

        self.sent: list[tuple[str, dict[str, object]]] = []
        outer = self

        class Reply:
            def __enter__(self) -> Reply:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def read(self) -> bytes:
                return b""

        def urlopen(request: urllib.request.Request, timeout: float = 0) -> Reply:
            assert request.get_method() == "PUT"
            assert isinstance(request.data, bytes)
            outer.sent.append((request.full_url, json.loads(request.data)))
            return Reply()

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)


CFN = {"ResponseURL": "https://cfn-response.example/put", "StackId": "arn:stack/Coafi", "RequestId": "r-1",
       "LogicalResourceId": "EngineWorkflowRegistry", "ResourceType": "Custom::CoafiWorkflowRegistry"}


def test_a_malformed_request_is_answered_failed_with_the_reason(
        registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    responses = Responses(monkeypatch)
    answer = handle({**CFN, "RequestType": "Upgrade", "ResourceProperties": {}}, registry, Publisher())
    assert answer["Status"] == "FAILED"
    ((url, body),) = responses.sent
    assert url == CFN["ResponseURL"]
    assert body["Status"] == "FAILED" and "RequestType" in str(body["Reason"])
    assert (body["RequestId"], body["LogicalResourceId"], body["PhysicalResourceId"]) == \
        ("r-1", "EngineWorkflowRegistry", "coafi-workflow-registry")


def test_a_malformed_policy_set_fails_the_resource_and_names_the_field(
        registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    responses = Responses(monkeypatch)
    props = policy_props({"orders": [policy("p")]})
    props["ErrorPolicies"] = json.dumps({"policies": {"p": {"policy": {"id": "p"}}}, "workflows": {}})
    handle({**CFN, "RequestType": "Create", "ResourceProperties": props}, registry, Publisher())
    ((_, body),) = responses.sent
    assert body["Status"] == "FAILED" and "errorTypes" in str(body["Reason"])
    assert policy_items() == {}


def test_every_answer_keeps_one_physical_id(registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    responses = Responses(monkeypatch)
    props = policy_props({"orders": [policy("p")]})
    for kind in ("Create", "Update", "Delete"):
        handle({**CFN, "RequestType": kind, "PhysicalResourceId": "coafi-workflow-registry",
                "ResourceProperties": props, "OldResourceProperties": props}, registry, Publisher())
    assert [(b["Status"], b["PhysicalResourceId"]) for _, b in responses.sent] == \
        [("SUCCESS", "coafi-workflow-registry")] * 3


def test_a_sync_request_registers_the_policy_set_it_carries(registry: WorkflowRegistry) -> None:
    from coafi.resilience.registry import PolicyRegistry

    props = policy_props({"orders": [policy("p")]})
    answer = handle({"RequestType": "Sync", "ResourceProperties": props}, registry, Publisher())
    assert answer["Status"] == "SUCCESS"
    assert [p.id for p in PolicyRegistry(TABLE).workflow_policies("orders")] == ["p"]


class FakeCloud:
    """CloudFormation and Lambda as ``coafi deploy --local`` sees them after the stack deployed."""

    def __init__(self, physical_id: str, template: dict[str, object]) -> None:
        self.physical_id = physical_id
        self.template = template
        self.invoked: list[dict[str, object]] = []

    def describe_stacks(self, StackName: str) -> dict[str, object]:
        return {"Stacks": [{"StackId": f"arn:aws:cloudformation:eu-west-1:000000000000:stack/{StackName}/1-2-3",
                            "Outputs": [{"OutputKey": "RegistrarFunctionName", "OutputValue": "registrar"}]}]}

    def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, object]:
        assert LogicalResourceId == "EngineWorkflowRegistry"
        return {"StackResourceDetail": {"LogicalResourceId": LogicalResourceId,
                                        "PhysicalResourceId": self.physical_id}}

    def get_template(self, StackName: str) -> dict[str, object]:
        return {"TemplateBody": self.template}

    def invoke(self, FunctionName: str, Payload: str) -> dict[str, object]:
        import io

        self.invoked.append(json.loads(Payload))
        return {"Payload": io.BytesIO(b'{"Status": "SUCCESS"}')}


@pytest.mark.parametrize(("physical_id", "runs_the_registrar"), [("coafi-workflow-registry", False),
                                                                  ("unknown", True)])
def test_deploy_local_runs_the_registrar_only_when_the_custom_resource_was_skipped(
        monkeypatch: pytest.MonkeyPatch, physical_id: str, runs_the_registrar: bool) -> None:
    from coafi.engine import registrar

    text = json.dumps({"policies": {}, "workflows": {"orders": []}})
    # as deployed: the state machine's ARN is a reference to the workflow's nested stack
    orders = {"stateMachineArn": {"Fn::GetAtt": ["WorkflowsordersNestedStack", "Outputs.CoafiMachineRef"]},
              "version": "2.0.0", "definitionSha256": "ab" * 32}
    fake = FakeCloud(physical_id, {"Resources": {
        "Rules": {"Type": "Custom::CoafiRuleFile", "Properties": {}},
        "EngineWorkflowRegistry": {"Type": "Custom::CoafiWorkflowRegistry", "Properties": {
            "ServiceToken": {"Fn::GetAtt": ["Registrar", "Arn"]}, "Source": "stack:Coafi",
            "Workflows": {"orders": orders}, "ErrorPolicies": text}}}})
    monkeypatch.setattr(aws, "client", lambda service, **_: fake)
    registrar.sync_deployed_stack("Coafi")
    expected = {"Source": "stack:Coafi", "ErrorPolicies": text, "Workflows": {"orders": {
        **orders, "stateMachineArn": "arn:aws:states:eu-west-1:000000000000:stateMachine:Coafi_orders"}}}
    assert fake.invoked == ([{"RequestType": "Sync", "ResourceProperties": expected}] if runs_the_registrar else [])


def test_cloudformation_gets_counts_when_the_registered_arns_would_not_fit_its_4096_byte_response(
        registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    responses = Responses(monkeypatch)
    props = {"Source": "stack:Coafi", "Workflows": {
        f"workflow-{i:03d}": {"stateMachineArn": f"{ARN}-{i:03d}", "version": "1.0.0"} for i in range(100)}}
    answer = handle({**CFN, "RequestType": "Create", "ResourceProperties": props}, registry, Publisher())
    assert len(json.loads(answer["Data"]["Registered"])) == 100  # the Lambda's own answer keeps them all
    ((_, body),) = responses.sent
    assert body["Status"] == "SUCCESS"
    assert len(json.dumps(body)) <= 4096
    assert body["Data"] == {"ErrorPolicies": "0", "RegisteredCount": "100", "UnregisteredCount": "0"}
    assert registry.resolve("workflow-099").stateMachineArn == f"{ARN}-099:100"
