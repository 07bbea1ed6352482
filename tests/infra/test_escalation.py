"""The escalation topic: Escalation events on the app's bus reach an encrypted SNS topic through a rule that
publishes with its own role; the topic is open to no service."""

from __future__ import annotations

import json

from tests.infra.conftest import Synth


def escalation_topic(synth: Synth) -> tuple[str, dict[str, object]]:
    (found,) = [(k, t) for k, t in synth.of_type("AWS::SNS::Topic").items()
                if t["Properties"].get("DisplayName", "").endswith(" escalations")]
    return found


def test_escalation_events_on_the_bus_go_to_the_encrypted_topic_with_the_rules_own_role(sample: Synth) -> None:
    topic_id, topic = escalation_topic(sample)
    properties: dict[str, object] = topic["Properties"]  # type: ignore[assignment]
    key_id = properties["KmsMasterKeyId"]["Fn::GetAtt"][0]  # type: ignore[index]
    key = sample.resources[key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    principals = [s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert all("Service" not in p for p in principals)  # no service uses the key except through IAM roles

    (rule,) = [r for r in sample.of_type("AWS::Events::Rule").values()
               if r["Properties"].get("EventPattern", {}).get("detail-type") == ["Escalation"]]
    assert rule["Properties"]["EventPattern"]["source"] == ["coafi.errors"]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    statements = sample.role_statements(role_id)
    publish = [s for s in statements if s["Action"] == "sns:Publish"]
    assert [s["Resource"] for s in publish] == [{"Ref": topic_id}]
    key_use = [s for s in statements if "kms:GenerateDataKey*" in json.dumps(s["Action"])]
    assert key_use and all(s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} for s in key_use)

    (policy,) = [p for p in sample.of_type("AWS::SNS::TopicPolicy").values()
                 if p["Properties"]["Topics"] == [{"Ref": topic_id}]]
    assert all(s["Effect"] == "Deny" for s in policy["Properties"]["PolicyDocument"]["Statement"])
    outputs = sample.template.to_json()["Outputs"]
    assert outputs["EscalationTopicArn"]["Value"] == {"Ref": topic_id}


def test_the_demo_workflow_compiles_its_policies_into_the_deployed_machine(sample: Synth) -> None:
    _, machine = sample.state_machine("Coafi_resilience-demo")
    body = machine["Properties"]["DefinitionString"]
    text = body if isinstance(body, str) else json.dumps(body)
    assert "DependencyUnavailable" in text and "JitterStrategy" in text and "errorPolicies" in text
