"""Lambda-backed CloudFormation custom resources (``Custom::*`` / ``AWS::CloudFormation::CustomResource``) for
the embedded LocalStack, whose community edition has no provider for them (it would skip them silently).

What AWS does, and so does this provider: it sends the function named by ``ServiceToken`` the custom resource
request (``RequestType`` Create / Update / Delete, ``ResponseURL``, ``StackId``, ``RequestId``,
``LogicalResourceId``, ``PhysicalResourceId``, ``ResourceProperties``, ``OldResourceProperties``) and waits for
the function to PUT its response (``Status``, ``Reason``, ``PhysicalResourceId``, ``Data``) to the pre-signed S3
URL it was given. Here the URL is a pre-signed PUT to a bucket of the local cloud; the function is invoked
synchronously, then the response object is read (polled briefly for a function that answers asynchronously).
A FAILED response, a function error, or no response in time fails the resource with the reason.

Used by COAFI to deploy the rule files of ``statemachines/rules/`` (``Custom::CoafiRuleFile``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from localstack import config
from localstack.services.cloudformation.resource_provider import (
    CloudFormationResourceProviderPlugin,
    OperationStatus,
    ProgressEvent,
    ResourceProvider,
    ResourceRequest,
)

RESPONSE_BUCKET_PREFIX = "coafi-cfn-responses"
#: How long to wait for a response PUT after the function returned (it may answer from another thread).
RESPONSE_WAIT_SECONDS = 60.0
PHYSICAL_ID = "PhysicalResourceId"


class CustomResourceProvider(ResourceProvider[dict[str, Any]]):
    TYPE = "AWS::CloudFormation::CustomResource"
    SCHEMA: dict[str, Any] = {  # noqa: RUF012 - the base class declares it an instance attribute
        "typeName": TYPE,
        "primaryIdentifier": [f"/properties/{PHYSICAL_ID}"],
        "properties": {"ServiceToken": {"type": "string"}, PHYSICAL_ID: {"type": "string"}},
        "required": ["ServiceToken"],
        "readOnlyProperties": [f"/properties/{PHYSICAL_ID}"],
        "additionalProperties": True,
    }

    def create(self, request: ResourceRequest[dict[str, Any]]) -> ProgressEvent[dict[str, Any]]:
        return self._call(request, "Create", dict(request.desired_state), None, None)

    def update(self, request: ResourceRequest[dict[str, Any]]) -> ProgressEvent[dict[str, Any]]:
        previous = dict(request.previous_state or {})
        return self._call(request, "Update", dict(request.desired_state), previous, previous.get(PHYSICAL_ID))

    def delete(self, request: ResourceRequest[dict[str, Any]]) -> ProgressEvent[dict[str, Any]]:
        state = dict(request.desired_state or request.previous_state or {})
        if not state.get("ServiceToken"):
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})
        return self._call(request, "Delete", state, None, state.get(PHYSICAL_ID))

    def read(self, request: ResourceRequest[dict[str, Any]]) -> ProgressEvent[dict[str, Any]]:
        raise NotImplementedError

    # -- the protocol --------------------------------------------------------------------------------------
    def _call(self, request: ResourceRequest[dict[str, Any]], kind: str, props: dict[str, Any],
              old: dict[str, Any] | None, physical_id: str | None) -> ProgressEvent[dict[str, Any]]:
        clients = request.aws_client_factory
        s3 = clients.s3
        bucket = f"{RESPONSE_BUCKET_PREFIX}-{request.account_id}-{request.region_name}"
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception:
            if request.region_name == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket,
                                 CreateBucketConfiguration={"LocationConstraint": request.region_name})
        request_id = str(uuid.uuid4())
        key = f"{request.logical_resource_id}/{request_id}"
        url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
        url = _reachable(url)
        properties = {k: v for k, v in props.items() if k != PHYSICAL_ID}
        event: dict[str, Any] = {
            "RequestType": kind,
            "ServiceToken": properties.get("ServiceToken"),
            "ResponseURL": url,
            "StackId": request.stack_id,
            "RequestId": request_id,
            "ResourceType": request.resource_type,
            "LogicalResourceId": request.logical_resource_id,
            "ResourceProperties": properties,
        }
        if physical_id:
            event["PhysicalResourceId"] = physical_id
        if old is not None:
            event["OldResourceProperties"] = {k: v for k, v in old.items() if k != PHYSICAL_ID}
        function = str(properties.get("ServiceToken") or "")
        if ":lambda:" not in function:
            return _failed(f"ServiceToken {function!r} is not a Lambda function ARN (SNS topics are not supported "
                           "locally)")
        reply = clients.lambda_.invoke(FunctionName=function, InvocationType="RequestResponse",
                                       Payload=json.dumps(event).encode())
        payload = reply["Payload"].read().decode(errors="replace")
        if reply.get("FunctionError"):
            return _failed(f"custom resource function failed: {payload[:2000]}")
        response = _wait_for_response(s3, bucket, key)
        if response is None:
            return _failed(f"custom resource function {function} sent no response to the ResponseURL")
        if response.get("Status") != "SUCCESS":
            return _failed(str(response.get("Reason") or "the custom resource function reported FAILED"))
        if kind == "Delete":
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})
        model = dict(properties)
        model[PHYSICAL_ID] = str(response.get(PHYSICAL_ID) or physical_id or request.logical_resource_id)
        for name, value in (response.get("Data") or {}).items():
            model.setdefault(name, value)  # Fn::GetAtt reads Data's attributes
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)


def _reachable(url: str) -> str:
    """The URL through the gateway the local functions can reach (the gateway's listen address)."""
    listen = config.GATEWAY_LISTEN[0]
    prefix = config.internal_service_url()
    if url.startswith(prefix):
        return f"http://{listen.host if listen.host not in ('0.0.0.0', '') else '127.0.0.1'}:{listen.port}" + \
            url[len(prefix):]
    return url


def _wait_for_response(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    deadline = time.monotonic() + RESPONSE_WAIT_SECONDS
    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:
            body = None
        if body is not None:
            s3.delete_object(Bucket=bucket, Key=key)
            try:
                data = json.loads(body)
            except ValueError:
                return {"Status": "FAILED", "Reason": f"the response is not JSON: {body[:200]!r}"}
            return data if isinstance(data, dict) else {"Status": "FAILED", "Reason": "the response is not an object"}
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def _failed(message: str) -> ProgressEvent[dict[str, Any]]:
    return ProgressEvent(status=OperationStatus.FAILED, resource_model={}, message=message)


class CustomResourceProviderPlugin(CloudFormationResourceProviderPlugin):
    name = "AWS::CloudFormation::CustomResource"

    def __init__(self) -> None:
        self.factory: type[ResourceProvider[Any]] | None = None

    def load(self) -> None:
        self.factory = CustomResourceProvider


__all__ = ["CustomResourceProvider", "CustomResourceProviderPlugin"]
