"""How large a Lambda function's environment can get once deployed, computed at synth time.

Lambda refuses a function whose environment variables, measured as the JSON object ``{"KEY":"value",...}``, exceed
4 KB ("String measured: {...}" in its error), and only at deploy. ``environment_size`` bounds that string from
the synthesized values: literals count as they are (JSON-escaped), CloudFormation tokens at their worst case:
pseudo parameters at the longest value they take (partition ``aws-us-gov``, a 20-character region, ...), a
``Ref``/``Fn::GetAtt`` of a resource at the longest name or ARN its type allows (an explicit name at its length),
``Fn::Join`` as the sum of its parts, a parameter of a nested stack at the longest value its parent passes.
Anything else counts ``UNKNOWN_TOKEN`` bytes. ``TokenEstimator`` is shared with ``infra.iam_size`` (IAM policies).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, CfnResource, CfnStack, Stack, Token

#: Lambda's limit on a function's environment (the variables as JSON), in bytes.
MAX_ENVIRONMENT_BYTES = 4096
PARTITION = len("aws-us-gov")
REGION = 20  # the longest today is 14 (ap-southeast-5, us-isob-east-1)
ACCOUNT = 12
URL_SUFFIX = len("amazonaws.com.cn")
STACK_NAME = 128
#: Any token this module does not know: a generous bound rather than a guess.
UNKNOWN_TOKEN = 1024
PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
          "AWS::URLSuffix": URL_SUFFIX, "AWS::StackName": STACK_NAME, "AWS::NoValue": 0,
          "AWS::StackId": len("arn::cloudformation:::stack//") + PARTITION + REGION + ACCOUNT + STACK_NAME + 36}


def _arn(service: str, resource: int) -> int:
    """``arn:<partition>:<service>:<region>:<account>:`` + a resource part of ``resource`` characters."""
    return len(f"arn:::{service}:::") + PARTITION + REGION + ACCOUNT + resource


#: Longest ``Ref`` value per resource type, and the property that names it (an explicit name is its own length).
REF: dict[str, tuple[int, str | None]] = {
    "AWS::DynamoDB::Table": (255, "tableName"),
    "AWS::DynamoDB::GlobalTable": (255, "tableName"),
    "AWS::S3::Bucket": (63, "bucketName"),
    "AWS::Events::EventBus": (256, "name"),
    "AWS::Lambda::Function": (64, "functionName"),
    "AWS::Scheduler::ScheduleGroup": (64, "name"),
    "AWS::IAM::Role": (64, "roleName"),
    "AWS::SQS::Queue": (len("https://sqs.../") + REGION + URL_SUFFIX + ACCOUNT + 80, None),  # the queue URL
    "AWS::SNS::Topic": (_arn("sns", 256), None),
    "AWS::StepFunctions::StateMachine": (_arn("states", len("stateMachine:") + 80), None),
    "AWS::Logs::LogGroup": (512, "logGroupName"),
}
#: Longest ``Fn::GetAtt <resource>.Arn`` per resource type.
ARN: dict[str, int] = {
    "AWS::DynamoDB::Table": _arn("dynamodb", len("table/") + 255),
    "AWS::DynamoDB::GlobalTable": _arn("dynamodb", len("table/") + 255),
    "AWS::S3::Bucket": len("arn:::s3:::") + PARTITION + 63,
    "AWS::Events::EventBus": _arn("events", len("event-bus/") + 256),
    "AWS::Lambda::Function": _arn("lambda", len("function:") + 64),
    "AWS::Scheduler::ScheduleGroup": _arn("scheduler", len("schedule-group/") + 64),
    "AWS::IAM::Role": len("arn:::iam:::role/") + PARTITION + ACCOUNT + 512 + 64,
    "AWS::SQS::Queue": _arn("sqs", 80),
    "AWS::SNS::Topic": _arn("sns", 256),
    "AWS::StepFunctions::StateMachine": _arn("states", len("stateMachine:") + 80),
    "AWS::Logs::LogGroup": _arn("logs", len("log-group::*") + 512),
}


@dataclass(frozen=True)
class EnvironmentSize:
    """The worst-case size of an environment as Lambda measures it, and each variable's share."""

    total: int
    variables: dict[str, int]

    def largest(self, count: int = 3) -> list[tuple[str, int]]:
        return sorted(self.variables.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


_ESTIMATORS: weakref.WeakKeyDictionary[Stack, TokenEstimator] = weakref.WeakKeyDictionary()


class TokenEstimator:
    """The longest text a synthesized value (literal or CloudFormation token, resolved in ``stack``) can become."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._resources: dict[str, CfnResource] | None = None
        self._parameters: dict[str, int] | None = None
        self._nested: dict[str, Stack] | None = None

    @classmethod
    def of(cls, stack: Stack) -> TokenEstimator:
        """The estimator of ``stack``, made once: each one indexes its stack's resources (a walk of the construct
        tree through jsii), so the checks of an app with 50 nested stacks share 51 walks instead of making one per
        function, role and parameter (synth CPU: BENCHMARKS.md). Estimates are made when the app is synthesized,
        when its tree is complete."""
        estimator = _ESTIMATORS.get(stack)
        if estimator is None:
            estimator = _ESTIMATORS[stack] = cls(stack)
        return estimator

    def resources(self) -> dict[str, CfnResource]:
        if self._resources is None:
            self._resources = {}
            for construct in self.stack.node.find_all():
                if isinstance(construct, CfnResource) and Stack.of(construct) is self.stack:
                    self._resources[str(self.stack.resolve(construct.logical_id))] = construct
        return self._resources

    def literal(self, text: str) -> int:
        return len(json.dumps(text)) - 2  # as escaped in the JSON Lambda measures

    def length(self, value: Any) -> int:
        if isinstance(value, str):
            return self.literal(value)
        if isinstance(value, bool) or value is None:
            return len(json.dumps(value))
        if isinstance(value, (int, float)):
            return len(str(value))
        if isinstance(value, dict) and len(value) == 1:
            [(function, args)] = value.items()
            return self.intrinsic(function, args)
        return UNKNOWN_TOKEN

    def intrinsic(self, function: str, args: Any) -> int:
        if function == "Ref" and isinstance(args, str):
            return self.ref(args)
        if function == "Fn::GetAtt" and isinstance(args, list) and len(args) == 2:
            resource = self.resources().get(str(args[0]))
            if isinstance(resource, CfnStack) and str(args[1]).startswith("Outputs."):
                return self.nested_output(resource, str(args[1])[len("Outputs."):])
            if resource is not None and args[1] == "Arn":
                path = getattr(resource, "path", None) if resource.cfn_resource_type == "AWS::IAM::Role" else None
                if resource.cfn_resource_type == "AWS::IAM::Role" and path is None:  # the default path, "/"
                    return len("arn:::iam:::role/") + PARTITION + ACCOUNT + 64
                return ARN.get(resource.cfn_resource_type, UNKNOWN_TOKEN)
            return UNKNOWN_TOKEN
        if function == "Fn::Join" and isinstance(args, list) and len(args) == 2 and isinstance(args[1], list):
            separator, parts = args
            return sum(self.length(p) for p in parts) + self.length(separator) * max(len(parts) - 1, 0)
        if function == "Fn::Select" and isinstance(args, list) and len(args) == 2:
            options = args[1]
            if isinstance(options, list):
                return max((self.length(o) for o in options), default=0)
            if isinstance(options, dict) and "Fn::Split" in options:
                split = options["Fn::Split"]
                return self.length(split[1]) if isinstance(split, list) and len(split) == 2 else UNKNOWN_TOKEN
        if function == "Fn::If" and isinstance(args, list) and len(args) == 3:
            return max(self.length(args[1]), self.length(args[2]))
        return UNKNOWN_TOKEN

    def ref(self, name: str) -> int:
        if name in PSEUDO:
            if name == "AWS::StackName" and not Token.is_unresolved(self.stack.stack_name):
                return len(self.stack.stack_name)
            return PSEUDO[name]
        resource = self.resources().get(name)
        if resource is None:
            # a parameter of a nested stack (CDK's reference to a resource of its parent), or unknown
            return self.parameters().get(name, UNKNOWN_TOKEN)
        longest, name_property = REF.get(resource.cfn_resource_type, (UNKNOWN_TOKEN, None))
        explicit = getattr(resource, name_property, None) if name_property else None
        if isinstance(explicit, str) and not Token.is_unresolved(explicit):
            return self.literal(explicit)
        return longest


    def nested_stacks(self) -> dict[str, Stack]:
        """The nested stacks under this stack, by the path of the resource that deploys each."""
        if self._nested is None:
            self._nested = {}
            for construct in self.stack.node.find_all():
                if isinstance(construct, Stack) and construct.nested_stack_resource is not None:
                    self._nested[construct.nested_stack_resource.node.path] = construct
        return self._nested

    def nested_output(self, resource: CfnStack, output: str) -> int:
        """The longest value of output ``output`` of the nested stack ``resource`` deploys."""
        construct = self.nested_stacks().get(resource.node.path)
        if construct is not None:
            for candidate in construct.node.find_all():
                if (isinstance(candidate, CfnOutput) and Stack.of(candidate) is construct
                        and construct.resolve(candidate.logical_id) == output):
                    return TokenEstimator.of(construct).length(construct.resolve(candidate.value))
        return UNKNOWN_TOKEN

    def parameters(self) -> dict[str, int]:
        """The longest value of each parameter the parent stack passes to this nested stack (none otherwise)."""
        if self._parameters is None:
            self._parameters = {}
            parent = self.stack.nested_stack_parent
            resource = self.stack.nested_stack_resource
            if parent is not None and isinstance(resource, CfnStack):
                values = parent.resolve(resource.parameters)
                if isinstance(values, dict):
                    outer = TokenEstimator.of(parent)
                    self._parameters = {str(k): outer.length(v) for k, v in values.items()}
        return self._parameters


def environment_size(stack: Stack, environment: Mapping[str, str]) -> EnvironmentSize:
    """The most bytes ``environment`` (variable -> value, tokens allowed) can take as Lambda measures it."""
    estimator = TokenEstimator.of(stack)
    variables: dict[str, int] = {}
    for key, value in environment.items():
        # "KEY":"value" and its comma
        variables[key] = estimator.literal(key) + estimator.length(stack.resolve(value)) + len('"":"",')
    return EnvironmentSize(total=sum(variables.values()) + len("{}") - (1 if variables else 0), variables=variables)
