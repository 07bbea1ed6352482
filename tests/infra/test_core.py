"""The shared resources: state table, payload bucket, bus, queues, schedule group, layer, functions, outputs."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from infra.discovery import discover_actions
from tests.infra.conftest import REPO_ROOT, Synth

#: The task dispatcher (infra/constructs/tasks.py) has its own, narrower grants: tests/infra/test_tasks.py.
DISPATCHER = "COAFI task dispatcher of "
#: The engine API and registrar functions (infra/constructs/engine.py): tests/infra/test_engine.py.
ENGINE = ("COAFI engine API of ", "COAFI workflow registrar of ")


def _state_functions(synth: Synth) -> dict[str, Any]:
    """The functions that record execution state: the state function and the actions."""
    return {k: v for k, v in synth.of_type("AWS::Lambda::Function").items()
            if not str(v["Properties"].get("Description", "")).startswith((DISPATCHER, "COAFI rules", *ENGINE))}


def test_state_table_has_keys_pitr_encryption_and_ttl(sample: Synth) -> None:
    sample.template.resource_count_is("AWS::DynamoDB::GlobalTable", 1)  # TableV2
    sample.template.has_resource(
        "AWS::DynamoDB::GlobalTable",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"},
                              {"AttributeName": "SK", "KeyType": "RANGE"}],
                "AttributeDefinitions": Match.array_with([{"AttributeName": "PK", "AttributeType": "S"},
                                                          {"AttributeName": "SK", "AttributeType": "S"}]),
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
                "Replicas": [Match.object_like(
                    {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
                )],
            },
            "DeletionPolicy": "Delete",
        },
    )


def test_state_table_has_the_sparse_indexes_of_find_executions(sample: Synth) -> None:
    from coafi.state import schema

    table = next(iter(sample.of_type("AWS::DynamoDB::GlobalTable").values()))["Properties"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"byWorkflow", "byWorkflowStatus", "byStatus"}
    for index in schema.INDEXES:
        assert indexes[index.name]["KeySchema"] == [{"AttributeName": index.partition_key, "KeyType": "HASH"},
                                                    {"AttributeName": "idxStart", "KeyType": "RANGE"}]
        assert indexes[index.name]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": [
            "executionId", "workflowId", "workflowVersion", "status", "startTime", "endTime"]}
    assert {"AttributeName": "idxStart", "AttributeType": "S"} in table["AttributeDefinitions"]
    # the in-process tier creates exactly this table
    created = schema.create_table_arguments("t")
    assert created["KeySchema"] == table["KeySchema"]
    assert sorted(created["AttributeDefinitions"], key=str) == sorted(table["AttributeDefinitions"], key=str)
    assert {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in created["GlobalSecondaryIndexes"]} == {
        name: (i["KeySchema"], i["Projection"]) for name, i in indexes.items()}


def _buckets(synth: Synth) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """(payload bucket id, properties, access log bucket id, properties)."""
    buckets = synth.of_type("AWS::S3::Bucket")
    assert len(buckets) == 2
    payload_id = next(k for k, b in buckets.items() if "LoggingConfiguration" in b["Properties"])
    log_id = next(k for k in buckets if k != payload_id)
    return payload_id, buckets[payload_id]["Properties"], log_id, buckets[log_id]["Properties"]


def test_payload_bucket_is_private_encrypted_ssl_only_logged_and_expires(sample: Synth) -> None:
    payload_id, payload, log_id, log = _buckets(sample)
    for props in (payload, log):
        assert props["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert payload["LoggingConfiguration"] == {"DestinationBucketName": {"Ref": log_id}, "LogFilePrefix": "payloads/"}
    (rule,) = payload["LifecycleConfiguration"]["Rules"]
    # objects outlive the items pointing at them: retention (30) + backstop (366) + margin (7)
    assert rule["ExpirationInDays"] == 30 + 366 + 7
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert log["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90
    policies = list(sample.of_type("AWS::S3::BucketPolicy").values())
    for bucket_id in (payload_id, log_id):
        (policy,) = [p for p in policies if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert {"Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
                "Principal": {"AWS": "*"}} in [{k: v for k, v in s.items() if k != "Resource"} for s in statements]
    assert sample.resources[payload_id]["DeletionPolicy"] == "Delete"


def test_retained_data_keeps_the_payloads(focused: Synth) -> None:
    payload_id, _, _, _ = _buckets(focused)
    assert focused.resources[payload_id]["DeletionPolicy"] == "Retain"


def test_every_function_may_put_and_get_payload_objects_and_nothing_else_there(sample: Synth) -> None:
    payload_id, _, log_id, _ = _buckets(sample)
    for function in _state_functions(sample).values():
        assert function["Properties"]["Environment"]["Variables"]["COAFI_PAYLOAD_BUCKET"] == {"Ref": payload_id}
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        s3_statements = [s for s in sample.role_statements(role_id)
                         if any(str(a).startswith("s3:") for a in _as_list(s["Action"]))]
        assert s3_statements == [{
            "Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow",
            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [payload_id, "Arn"]}, "/executions/*"]]},
        }]
        assert log_id not in json.dumps(sample.role_statements(role_id))


def test_retain_data_keeps_and_protects_the_table(focused: Synth) -> None:
    focused.template.has_resource(
        "AWS::DynamoDB::GlobalTable",
        {"DeletionPolicy": "Retain",
         "Properties": {"Replicas": [Match.object_like({"DeletionProtectionEnabled": True})]}},
    )


def test_queues_are_encrypted_ssl_only_and_the_task_queue_has_a_dlq(sample: Synth) -> None:
    queues = sample.of_type("AWS::SQS::Queue")
    assert len(queues) == 2
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())
    dlq_id = next(k for k, q in queues.items() if "RedrivePolicy" not in q["Properties"])
    task = next(q for k, q in queues.items() if k != dlq_id)
    assert task["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert queues[dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    policies = sample.of_type("AWS::SQS::QueuePolicy").values()
    for queue_id in queues:
        statements = [s for p in policies if {"Ref": queue_id} in p["Properties"]["Queues"]
                      for s in p["Properties"]["PolicyDocument"]["Statement"]]
        assert {"Action": "sqs:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
                "Principal": {"AWS": "*"}, "Resource": {"Fn::GetAtt": [queue_id, "Arn"]}} in statements


def test_bus_and_schedule_group_are_named_after_the_stack(sample: Synth, focused: Synth) -> None:
    sample.template.has_resource_properties("AWS::Events::EventBus", {"Name": "Coafi-bus"})
    sample.template.has_resource_properties("AWS::Scheduler::ScheduleGroup", {"Name": "Coafi-schedules"})
    focused.template.has_resource_properties("AWS::Events::EventBus", {"Name": "Focus-bus"})


def test_one_function_per_action_folder_plus_the_state_function(sample: Synth) -> None:
    actions = discover_actions(REPO_ROOT / "functions" / "actions")
    assert actions, "the sample app has actions"
    functions = _state_functions(sample)
    assert len(functions) == len(actions) + 1
    layer_id = next(iter(sample.of_type("AWS::Lambda::LayerVersion")))
    for name in [*actions, None]:
        description = f"COAFI action {name}" if name else \
            "COAFI state function of Coafi: records executions and steps"
        props = functions[sample.function_id(description)]["Properties"]
        assert props["Handler"] == "handler.handler"
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        assert props["MemorySize"] == 256
        assert props["Timeout"] == 30
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer_id}]
        env = props["Environment"]["Variables"]
        assert env["COAFI_TABLE_NAME"] == {"Ref": next(iter(sample.of_type("AWS::DynamoDB::GlobalTable")))}
        assert env["POWERTOOLS_SERVICE_NAME"] == (name or "coafi-state")
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Coafi"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
        assert "COAFI_EVENT_BUS_NAME" in env  # the state function announces callback steps' tokens (docs/waits.md)
        log_group = sample.resources[props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == 30


def test_the_focused_project_deploys_only_folders_with_a_handler(focused: Synth) -> None:
    descriptions = sorted(f["Properties"]["Description"] for f in _state_functions(focused).values())
    assert descriptions == ["COAFI action echo", "COAFI action store", "COAFI action unused",
                            "COAFI state function of Focus: records executions and steps"]


def test_function_roles_reach_only_their_log_group_the_table_the_payloads_and_the_bus(sample: Synth) -> None:
    table_id = next(iter(sample.of_type("AWS::DynamoDB::GlobalTable")))
    bus_id = next(iter(sample.of_type("AWS::Events::EventBus")))
    for function in _state_functions(sample).values():
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        role = sample.resources[role_id]["Properties"]
        assert "ManagedPolicyArns" not in role, "no AWSLambdaBasicExecutionRole: logs go to the own group only"
        resources = {json.dumps(r, sort_keys=True) for s in sample.role_statements(role_id)
                     for r in _as_list(s["Resource"])}
        log_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        payload_id = _buckets(sample)[0]
        allowed = {json.dumps(r, sort_keys=True) for r in (
            {"Fn::GetAtt": [log_group, "Arn"]}, {"Fn::GetAtt": [table_id, "Arn"]},
            {"Fn::Join": ["", [{"Fn::GetAtt": [table_id, "Arn"]}, "/index/*"]]},  # find_executions
            {"Fn::Join": ["", [{"Fn::GetAtt": [payload_id, "Arn"]}, "/executions/*"]]},  # large payloads
            {"Fn::GetAtt": [bus_id, "Arn"]}, "*",  # "*": X-Ray only, see test_security
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":",
                               {"Ref": "AWS::AccountId"}, ":stateMachine:Coafi_*"]]},  # signal steps' tokens
        )}
        allowed |= _saga_resources(sample)  # infra/constructs/saga.py (tests/infra/test_saga.py checks them)
        assert resources <= allowed


def test_layer_is_built_for_python_3_12_x86_64(sample: Synth) -> None:
    sample.template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.12"], "CompatibleArchitectures": ["x86_64"]},
    )


def test_outputs(sample: Synth) -> None:
    outputs = sample.template.to_json()["Outputs"]
    assert {"StateTableName", "EventBusName", "TaskQueueUrl", "ScheduleGroupName", "StateFunctionArn",
            "WorkflowArns"} <= set(outputs)
    assert outputs["ScheduleGroupName"]["Value"] == "Coafi-schedules"
    joined = outputs["WorkflowArns"]["Value"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "ARN" for part in joined)
    workflow_ids = set(json.loads(text))
    machines = sample.of_type("AWS::StepFunctions::StateMachine").values()
    assert workflow_ids == {m["Properties"]["StateMachineName"].removeprefix("Coafi_") for m in machines}
    refs = [part["Ref"] for part in joined if isinstance(part, dict)]
    assert all(sample.resources[r]["Type"] == "AWS::StepFunctions::StateMachine" for r in refs)


def _saga_resources(sample: Synth) -> set[str]:
    """The dead-letter queue (failed asynchronous invocations) and, for the state function running schedule steps,
    the task queue, the group's task-* schedules and the Scheduler role."""
    queues = [{"Fn::GetAtt": [q, "Arn"]} for q in sample.of_type("AWS::SQS::Queue")]
    roles = [{"Fn::GetAtt": [r, "Arn"]} for r, v in sample.of_type("AWS::IAM::Role").items()
             if "delayed and cron tasks" in v["Properties"].get("Description", "")]
    schedules = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":scheduler:", {"Ref": "AWS::Region"}, ":",
                                   {"Ref": "AWS::AccountId"}, ":schedule/Coafi-schedules/task-*"]]}
    return {json.dumps(r, sort_keys=True) for r in (*queues, *roles, schedules)}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
