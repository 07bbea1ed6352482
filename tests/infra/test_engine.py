"""The engine API's resources: the API function (commands, triggers), the registrar and its custom resource,
held to least privilege (synthesized from the repository's own app)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from coafi.compiler import compile_workflow
from coafi.definitions import load_definition
from coafi.engine.commands import COMMANDS
from coafi.engine.registry import REGISTRY_PK
from coafi.resilience.registry import PARTITION as POLICY_PARTITION
from coafi.resilience.registry import PolicySet
from tests.infra.conftest import REPO_ROOT, Synth, resources_of

API = "COAFI engine API of Coafi: commands and event triggers"
REGISTRAR = "COAFI workflow registrar of Coafi: registers deployed versions"
DEFINITIONS = {d.id: d for d in (load_definition(f) for f in sorted((REPO_ROOT / "statemachines").glob("*.yaml")))}
WORKFLOWS = tuple(sorted(DEFINITIONS))
STATES = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>"
TRIGGERED = [wf for wf, d in DEFINITIONS.items() if any(t.type == "event" for t in d.triggers)]


def _role_of(synth: Synth, function_id: str) -> str:
    role = synth.resources[function_id]["Properties"]["Role"]
    return str(role["Fn::GetAtt"][0])


def _statements(synth: Synth, function_id: str) -> list[dict[str, Any]]:
    return synth.role_statements(_role_of(synth, function_id))


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return set(actions if isinstance(actions, list) else [actions])


def _with_action(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if action in _actions(s)]


def test_the_api_function_starts_only_the_stacks_workflows_and_their_versions(sample: Synth) -> None:
    api = sample.function_id(API)
    statements = _statements(sample, api)
    [start] = _with_action(statements, "states:StartExecution")
    # by the stack's prefix: its machines and their published versions, one resource however many workflows
    # (CDK merges in the task responses of signal commands, granted on the same resource)
    assert resources_of(start) == [f"{STATES}:stateMachine:Coafi_*"]
    assert _actions(start) <= {"states:StartExecution", "states:SendTaskSuccess", "states:SendTaskFailure"}
    [control] = _with_action(statements, "states:StopExecution")
    assert _actions(control) == {"states:StopExecution", "states:DescribeExecution"}
    assert resources_of(control) == [f"{STATES}:execution:Coafi_*:*"]
    for statement in statements:
        assert statement["Resource"] != "*" or _actions(statement) <= {
            "xray:PutTraceSegments", "xray:PutTelemetryRecords"}, statement
    environment = sample.resources[api]["Properties"]["Environment"]["Variables"]
    assert {"COAFI_TABLE_NAME", "COAFI_EVENT_BUS_NAME", "COAFI_WORKFLOW_IDS", "COAFI_STATE_MACHINE_ARN_PREFIX",
            "COAFI_PAYLOAD_BUCKET"} <= set(environment)
    assert sorted(environment["COAFI_WORKFLOW_IDS"].split(",")) == sorted(WORKFLOWS)


def test_commands_reach_the_api_function_and_failures_end_in_the_dead_letter_queue(sample: Synth) -> None:
    api = sample.function_id(API)
    dlq = next(k for k, q in sample.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"])
    [rule] = [r["Properties"] for r in sample.of_type("AWS::Events::Rule").values()
              if r["Properties"]["EventPattern"].get("detail-type") == sorted(COMMANDS)]
    target = rule["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": [api, "Arn"]} and "Input" not in target
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}
    [config] = [c["Properties"] for c in sample.of_type("AWS::Lambda::EventInvokeConfig").values()
                if c["Properties"]["FunctionName"] == {"Ref": api}]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [dlq, "Arn"]}
    permissions = [p["Properties"] for p in sample.of_type("AWS::Lambda::Permission").values()
                   if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [api, "Arn"]}]
    assert TRIGGERED and len(permissions) == 1 + len(TRIGGERED)  # the command rule and each trigger rule
    assert all(p["Principal"] == "events.amazonaws.com" and "SourceArn" in p for p in permissions)


def test_the_registrar_touches_only_the_registry_and_publishes_versions(sample: Synth) -> None:
    registrar = sample.function_id(REGISTRAR)
    statements = _statements(sample, registrar)
    table_statements = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert len(table_statements) == 1
    assert table_statements[0]["Condition"] == {  # the workflow registry and the error policies, no other item
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [REGISTRY_PK, POLICY_PARTITION]}}
    assert "dynamodb:Scan" not in _actions(table_statements[0])
    [publish] = _with_action(statements, "states:PublishStateMachineVersion")
    assert _actions(publish) == {"states:PublishStateMachineVersion"}
    assert resources_of(publish) == [f"{STATES}:stateMachine:Coafi_*"]  # the stack's machines, by prefix
    assert not _with_action(statements, "states:StartExecution")


def test_every_deploy_registers_each_workflows_version_through_the_custom_resource(sample: Synth) -> None:
    registrar = sample.function_id(REGISTRAR)
    [(_, resource)] = sample.of_type("Custom::CoafiWorkflowRegistry").items()
    properties = resource["Properties"]
    assert properties["ServiceToken"] == {"Fn::GetAtt": [registrar, "Arn"]}
    assert properties["Source"] == "stack:Coafi"
    for workflow_id in WORKFLOWS:
        definition = DEFINITIONS[workflow_id]
        entry = properties["Workflows"][workflow_id]
        assert entry["stateMachineArn"] == {"Ref": sample.state_machine(f"Coafi_{workflow_id}")[0]}
        assert entry["version"] == definition.version
        # a changed definition changes the resource's properties, so the deploy re-registers it
        asl = compile_workflow(definition).asl
        assert entry["definitionSha256"] == hashlib.sha256(json.dumps(asl, sort_keys=True).encode()).hexdigest()
    outputs = sample.template.to_json()["Outputs"]
    assert {"ApiFunctionName", "RegistrarFunctionName"} <= set(outputs)


def test_every_deploy_registers_the_definitions_error_policies_through_the_custom_resource(sample: Synth) -> None:
    registrar = sample.function_id(REGISTRAR)
    [(_, resource)] = sample.of_type("Custom::CoafiWorkflowRegistry").items()
    text = resource["Properties"]["ErrorPolicies"]
    assert isinstance(text, str)  # JSON text: CloudFormation would turn numbers and booleans into strings
    policies = PolicySet.model_validate_json(text)
    demo = DEFINITIONS["resilience-demo"]
    assert policies.workflows["resilience-demo"] == ["transient-retry", "permanent-fail"]
    assert policies.workflows["content-generation"] == []
    assert set(policies.workflows) == set(WORKFLOWS)
    assert policies.policies["transient-retry"].policy == demo.policies[0]  # the whole policy, not just its id
    assert policies.policies["transient-retry"].source == "statemachines/policies/transient-retry.yaml"
    # not in the function's environment (Lambda's 4 KB limit; a Sync reads them from the deployed template)
    environment = sample.resources[registrar]["Properties"]["Environment"]["Variables"]
    assert "ErrorPolicies" not in json.dumps(environment)
    assert not [w for w in WORKFLOWS if w in json.dumps(environment)]
