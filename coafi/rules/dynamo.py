"""The rule registry in DynamoDB: a :class:`~coafi.rules.store.RuleStore` on the app's state table.

| item | PK | SK | attributes |
|---|---|---|---|
| rule | ``RULES`` | ``RULE#<rule id>`` | the rule's fields (id, name, description, category, conditions, event, |
| | | | actions, priority, enabled, onSuccess, onFailure), **version**, updatedAt, source (its file) |

All rules share one partition (``RULES``), so listing them (by id order) or a category is one Query, never a
Scan, and the functions' IAM policies can be limited to that partition (``dynamodb:LeadingKeys``). No state
manager item (``EXEC#...``) nor task item (``TASK#...``, ``WORKERS``, ``IDEMPOTENCY#tasks``) uses that key.
Rule counts are small (hundreds) and reads are cached by the rules function, far from a partition's limits.

Every write sets ``version`` to the stored version + 1 in one ``UpdateItem`` (no read first). With
``expected_version`` the write carries the condition ``version = :expected``: a second editor holding a stale
copy gets a :class:`~coafi.rules.errors.RuleConflictError` naming the rule, the version it expected and the one
stored, instead of silently overwriting the first editor's change.

Rule JSON is stored as DynamoDB maps (readable in the console); DynamoDB has no floats, so numbers are written
as ``Decimal`` and read back as ``int`` (integral, written without a fraction) or ``float``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from coafi.rules.errors import RuleConflictError
from coafi.state import schema

if TYPE_CHECKING:
    from coafi.rules.models import Rule

__all__ = ["RULES_PK", "RULE_LEADING_KEYS", "DynamoRuleStore", "from_dynamo", "to_dynamo"]

RULES_PK = "RULES"
RULE_PREFIX = "RULE#"
#: The partition keys the rules functions may touch (their IAM policies' ``dynamodb:LeadingKeys``).
RULE_LEADING_KEYS = (RULES_PK,)
#: Rule fields stored as attributes (the model's aliases), each removed from the item when unset.
_FIELDS = ("id", "name", "description", "category", "conditions", "event", "actions", "priority", "enabled",
           "onSuccess", "onFailure")


def to_dynamo(value: Any, where: str = "$") -> Any:
    """Plain JSON with floats as ``Decimal`` (what boto3's serializer takes); NaN/Infinity are refused."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{where}: {value} cannot be stored in DynamoDB (no NaN or Infinity)")
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: a {type(value).__name__} is not JSON")


def from_dynamo(value: Any) -> Any:
    """What boto3 reads back, as plain JSON: ``Decimal`` becomes ``int`` when written without a fraction
    (``5``), ``float`` otherwise (``5.0``, ``0.25``), so the engine sees the numbers the rule was written with."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(value)
        return float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [from_dynamo(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DynamoRuleStore:
    """A :class:`~coafi.rules.store.RuleStore` on the state table (``table_name``; ``client``: a boto3
    DynamoDB client, default ``coafi.aws.client("dynamodb")``). ``source`` (e.g. the rule file) is recorded on
    every write, for people reading the table."""

    def __init__(self, table_name: str, *, client: Any = None, consistent_read: bool = True) -> None:
        self.table_name = table_name
        self._client = client
        self.consistent_read = consistent_read

    @property
    def client(self) -> Any:
        if self._client is not None:
            return self._client
        from coafi import aws

        return aws.client("dynamodb")  # cached by coafi.aws per region and endpoint

    @staticmethod
    def key(rule_id: str) -> dict[str, Any]:
        return {schema.PARTITION_KEY: {"S": RULES_PK}, schema.SORT_KEY: {"S": RULE_PREFIX + rule_id}}

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, rule_id: str) -> Rule | None:
        response = self.client.get_item(TableName=self.table_name, Key=self.key(rule_id),
                                        ConsistentRead=self.consistent_read)
        item = response.get("Item")
        return self._rule(item) if item else None

    def list(self, *, category: str | None = None) -> list[Rule]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY, "#sk": schema.SORT_KEY},
            "ExpressionAttributeValues": {":pk": {"S": RULES_PK}, ":prefix": {"S": RULE_PREFIX}},
            "ConsistentRead": self.consistent_read,
        }
        if category is not None:
            kwargs["FilterExpression"] = "#category = :category"
            kwargs["ExpressionAttributeNames"]["#category"] = "category"
            kwargs["ExpressionAttributeValues"][":category"] = {"S": category}
        rules: list[Rule] = []
        while True:
            page = self.client.query(**kwargs)
            rules.extend(self._rule(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return rules
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writes ---------------------------------------------------------------------------------------
    def put(self, rule: Rule, *, expected_version: int | None = None, source: str | None = None) -> Rule:
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        data = rule.model_dump(by_alias=True, exclude={"version"})
        names: dict[str, str] = {"#version": "version", "#updatedAt": "updatedAt"}
        values: dict[str, Any] = {":zero": {"N": "0"}, ":one": {"N": "1"}, ":now": {"S": _now()}}
        sets = ["#version = if_not_exists(#version, :zero) + :one", "#updatedAt = :now"]
        removes: list[str] = []
        fields = [*_FIELDS, "source"]
        data["source"] = source
        for i, name in enumerate(fields):
            names[f"#f{i}"] = name
            value = data.get(name)
            if value is None or (name == "actions" and not value):
                removes.append(f"#f{i}")
                continue
            try:
                values[f":f{i}"] = serializer.serialize(to_dynamo(value, f"$.{name}"))
            except (ValueError, TypeError, InvalidOperation) as exc:
                raise ValueError(f"rule {rule.id!r}: cannot store {name}: {exc}") from None
            sets.append(f"#f{i} = :f{i}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self.key(rule.id),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if expected_version is not None:
            kwargs["ConditionExpression"] = "#version = :expected"
            kwargs["ExpressionAttributeValues"][":expected"] = {"N": str(expected_version)}
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            response = self.client.update_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise RuleConflictError(rule.id, expected_version, self._version_after_conflict(rule.id, exc)) from None
        return self._rule(response["Attributes"])

    def delete(self, rule_id: str, *, expected_version: int | None = None) -> bool:
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Key": self.key(rule_id), "ReturnValues": "ALL_OLD"}
        if expected_version is not None:
            kwargs["ConditionExpression"] = "#version = :expected"
            kwargs["ExpressionAttributeNames"] = {"#version": "version"}
            kwargs["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            response = self.client.delete_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            actual = self._version_after_conflict(rule_id, exc)
            if actual is None:
                return False  # nothing to delete (as the in-memory store answers)
            raise RuleConflictError(rule_id, expected_version, actual) from None
        return bool(response.get("Attributes"))

    def delete_from_source(self, rule_id: str, source: str) -> bool:
        """Remove the rule only while it was last written from ``source`` (a rule file); ``False`` otherwise."""
        try:
            self.client.delete_item(
                TableName=self.table_name, Key=self.key(rule_id), ConditionExpression="#source = :source",
                ExpressionAttributeNames={"#source": "source"}, ExpressionAttributeValues={":source": {"S": source}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # -- helpers --------------------------------------------------------------------------------------
    def _version_after_conflict(self, rule_id: str, exc: Any) -> int | None:
        item = getattr(exc, "response", {}).get("Item")
        if item is None:  # not every DynamoDB returns the item on a failed condition: read it
            item = self.client.get_item(TableName=self.table_name, Key=self.key(rule_id),
                                        ConsistentRead=True).get("Item")
        if not item or "version" not in item:
            return None
        return int(item["version"]["N"])

    @staticmethod
    def _rule(item: Mapping[str, Any]) -> Rule:
        from boto3.dynamodb.types import TypeDeserializer

        from coafi.rules.models import Rule

        deserializer = TypeDeserializer()
        data = {name: from_dynamo(deserializer.deserialize(item[name])) for name in (*_FIELDS, "version")
                if name in item}
        return Rule.model_validate(data)
