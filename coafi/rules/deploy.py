"""Deploying the rule files of ``statemachines/rules/`` into the registry.

The CDK app (``infra/constructs/rules.py``) validates every rule file at synth time and adds one custom resource
(``Custom::CoafiRuleFile``) per file whose properties carry the file's rules as JSON text (CloudFormation turns
every property into a string; JSON text keeps numbers and booleans intact). The rules-deploy function
(``functions/rules_deploy/handler.py``) handles the resource's lifecycle:

- Create / Update: validate and register every rule of the file (each write is the next version);
  on Update, rules the file no longer holds are unregistered;
- Delete (the file was removed, or the stack is deleted): unregister the file's rules.

A rule is only unregistered while it still belongs to the file (its ``source``), so a rule moved from one file to
another survives the old file's deletion (CloudFormation creates the new resource before deleting the old one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from coafi.cfn_response import put_response

if TYPE_CHECKING:
    from coafi.rules.dynamo import DynamoRuleStore
    from coafi.rules.models import Rule

__all__ = [
    "CustomResourceEvent",
    "CustomResourceResponse",
    "RuleFileProperties",
    "deploy_rule_files",
    "handle_event",
    "parse_rules_json",
    "rules_json",
    "send_response",
    "sync_rules",
]

RESOURCE_TYPE = "Custom::CoafiRuleFile"


def rules_json(rules: Sequence[Rule]) -> str:
    """The rules of a file as the custom resource's ``RulesJson`` property (stable text: sorted keys)."""
    return json.dumps([r.model_dump(by_alias=True, exclude_none=True, exclude={"version"}) for r in rules],
                      sort_keys=True, separators=(",", ":"))


def parse_rules_json(text: str | None) -> list[Rule]:
    from coafi.rules.models import Rule

    data = json.loads(text or "[]")
    if not isinstance(data, list):
        raise ValueError("RulesJson must be a JSON list of rules")
    return [Rule.model_validate(item) for item in data]


def sync_rules(store: DynamoRuleStore, rules: Sequence[Rule], *, source: str,
               previous: Iterable[str] = ()) -> list[str]:
    """Validate and register ``rules`` (all compiled before the first write: a malformed rule stores nothing),
    then unregister the ids of ``previous`` the file no longer holds. Returns the registered ids."""
    from coafi.rules.engine import RuleEngine

    engine = RuleEngine()
    for rule in rules:
        engine.compile(rule.engine_rule())  # RuleValidationError names the JSONPath
    for rule in rules:
        store.put(rule, source=source)
    ids = [r.id for r in rules]
    for rule_id in previous:
        if rule_id not in ids:
            store.delete_from_source(rule_id, source)
    return ids


def deploy_rule_files(store: DynamoRuleStore, folder: Path) -> list[str]:
    """Load, validate and register every rule file of ``folder`` (the in-process test tier's "deploy").
    Raises ``DefinitionError`` with every problem of every file."""
    from coafi.definitions.errors import DefinitionError
    from coafi.rules.files import load_rule_files

    files, problems = load_rule_files(folder)
    if problems:
        raise DefinitionError(problems)
    ids: list[str] = []
    for loaded in files:
        ids.extend(sync_rules(store, loaded.rules, source=loaded.file.name))
    return ids


# -- the custom resource ----------------------------------------------------------------------------------


class RuleFileProperties(BaseModel):
    model_config = ConfigDict(extra="ignore")

    File: str = Field(min_length=1)
    RulesJson: str = "[]"


class CustomResourceEvent(BaseModel):
    """CloudFormation's request to a Lambda-backed custom resource."""

    model_config = ConfigDict(extra="ignore")

    RequestType: Literal["Create", "Update", "Delete"]
    ResponseURL: str
    StackId: str
    RequestId: str
    LogicalResourceId: str
    ResourceType: str = RESOURCE_TYPE
    PhysicalResourceId: str | None = None
    ResourceProperties: RuleFileProperties
    OldResourceProperties: RuleFileProperties | None = None


class CustomResourceResponse(BaseModel):
    Status: Literal["SUCCESS", "FAILED"]
    Reason: str = ""
    PhysicalResourceId: str
    StackId: str
    RequestId: str
    LogicalResourceId: str
    Data: dict[str, str] = Field(default_factory=dict)


def physical_id(file: str) -> str:
    return f"coafi-rules:{file}"


def handle_event(event: CustomResourceEvent, store: DynamoRuleStore) -> CustomResourceResponse:
    """Apply the request; never raises (a failure is a FAILED response naming the problem, which CloudFormation
    shows as the resource's status reason and rolls back)."""
    props = event.ResourceProperties
    resource_id = event.PhysicalResourceId or physical_id(props.File)
    base = {"StackId": event.StackId, "RequestId": event.RequestId, "LogicalResourceId": event.LogicalResourceId}
    try:
        rules = parse_rules_json(props.RulesJson)
        if event.RequestType == "Delete":
            for rule in rules:
                store.delete_from_source(rule.id, props.File)
            return CustomResourceResponse(Status="SUCCESS", PhysicalResourceId=resource_id, **base)
        previous: list[str] = []
        old = event.OldResourceProperties
        if event.RequestType == "Update" and old is not None and old.File == props.File:
            previous = [r.id for r in parse_rules_json(old.RulesJson)]
        ids = sync_rules(store, rules, source=props.File, previous=previous)
        return CustomResourceResponse(Status="SUCCESS", PhysicalResourceId=physical_id(props.File),
                                      Data={"RuleIds": ",".join(ids)}, **base)
    except Exception as exc:  # reported to CloudFormation, which shows it and rolls back
        reason = f"{props.File}: {type(exc).__name__}: {exc}"
        return CustomResourceResponse(Status="FAILED", Reason=reason[:3000], PhysicalResourceId=resource_id, **base)


def send_response(url: str, response: CustomResourceResponse, *, timeout: float = 30.0) -> None:
    """PUT the response to CloudFormation's pre-signed URL (an empty content type, as that URL is signed for)."""
    put_response(url, response.model_dump_json().encode(), timeout=timeout)
