"""Escalations (docs/error-handling.md): ``Escalation`` events that actions put on the app's bus when an error
policy's threshold is crossed are forwarded by a rule to the escalation SNS topic (subscribe people, chat or a
pager to it). The topic is encrypted with its own rotated KMS key (the AWS
managed ``alias/aws/sns`` key cannot be granted); the rule publishes with its own role (``sns:Publish`` on this topic,
the key's data-key actions through IAM), so the topic policy opens the topic to no service; undeliverable events
go to the app's dead-letter queue.

Output: ``EscalationTopicArn``.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from coafi.resilience.escalation import DETAIL_TYPE, SOURCE
from infra import nag
from infra.constructs.core import Core
from infra.constructs.observability import KEY_ADMIN_ACTIONS, KEY_PUBLISH_ACTIONS

OUTPUT_TOPIC = "EscalationTopicArn"
RETRY_ATTEMPTS = 4
MAX_EVENT_AGE = Duration.hours(2)


class Escalations(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, core: Core) -> None:
        super().__init__(scope, construct_id)
        self.core = core
        self.key = self._build_key()
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{core.config.stack_name} escalations"[:100],
            master_key=self.key,
            enforce_ssl=True,
        )
        self.role = iam.Role(self, "PublishRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description="The escalation rule publishes to the escalation topic")
        self.rule = events.Rule(
            self,
            "Rule",
            event_bus=core.event_bus,
            description="Error policies' Escalation events -> the escalation topic",
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[DETAIL_TYPE]),
            targets=[targets.SnsTopic(
                self.topic, dead_letter_queue=core.dead_letter_queue, retry_attempts=RETRY_ATTEMPTS,
                max_event_age=MAX_EVENT_AGE,
                # a role for this rule (sns:Publish on this topic, its key through IAM) instead of a topic policy
                # open to every EventBridge rule
                authorize_using_role=True, role=self.role,
            )],
        )
        nag.suppress(
            self.role, "IAM5",
            "kms:GenerateDataKey* is how CDK grants publishing to an encrypted topic (GenerateDataKey and "
            "GenerateDataKeyWithoutPlaintext), on exactly the escalation topic's own key.",
            ["Action::kms:GenerateDataKey*"], children=True,
        )
        output = CfnOutput(self, OUTPUT_TOPIC, value=self.topic.topic_arn,
                           description="Escalations of error policies: subscribe to be told")
        output.override_logical_id(OUTPUT_TOPIC)

    def _build_key(self) -> kms.Key:
        policy = iam.PolicyDocument(statements=[
            iam.PolicyStatement(sid="AccountAdministersTheKey", principals=[iam.AccountRootPrincipal()],
                                actions=KEY_ADMIN_ACTIONS, resources=["*"]),  # in a key policy "*" is this key
            iam.PolicyStatement(sid="AccountPrincipalsMayPublishThroughIAM", principals=[iam.AccountRootPrincipal()],
                                actions=KEY_PUBLISH_ACTIONS, resources=["*"]),
        ])
        return kms.Key(
            self,
            "TopicKey",
            description=f"Encrypts the {self.core.config.stack_name} escalation topic (EventBridge publishes to it)",
            enable_key_rotation=True,
            policy=policy,
            removal_policy=self.core.removal_policy,
            pending_window=Duration.days(7),
        )
