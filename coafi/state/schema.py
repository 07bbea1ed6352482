"""The state table's keys and indexes: one definition for the data-access layer, the CDK table
(infra/constructs/core.py) and the in-process test tier (coafi/testing/inprocess.py).

Only execution records carry the index attributes, so the indexes are sparse: step events, history and
checkpoints never cost an index write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARTITION_KEY = "PK"
SORT_KEY = "SK"
TTL_ATTRIBUTE = "expiresAt"
#: Sort key of every index: ``<startTime, UTC ms>#<executionId>`` (time-ordered, unique).
INDEX_SORT_KEY = "idxStart"
#: Non-key attributes the indexes project: enough for a listing without reading the records.
PROJECTED_ATTRIBUTES = ("executionId", "workflowId", "workflowVersion", "status", "startTime", "endTime")


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    description: str


BY_WORKFLOW = Index("byWorkflow", "idxWorkflow", "executions of a workflow id, by start time")
BY_WORKFLOW_STATUS = Index("byWorkflowStatus", "idxWorkflowStatus",
                           "executions of a workflow id with one status ('<workflowId>#<status>'), by start time")
BY_STATUS = Index("byStatus", "idxStatus", "executions with one status, by start time")
INDEXES: tuple[Index, ...] = (BY_WORKFLOW, BY_WORKFLOW_STATUS, BY_STATUS)


def create_table_arguments(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments of the state table (on-demand, the same keys and indexes as the CDK table)."""
    key_attributes = [PARTITION_KEY, SORT_KEY, INDEX_SORT_KEY, *(i.partition_key for i in INDEXES)]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in key_attributes],
        "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                      {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"},
                              {"AttributeName": INDEX_SORT_KEY, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(PROJECTED_ATTRIBUTES)},
            }
            for index in INDEXES
        ],
    }


def create_table(client: Any, table_name: str) -> None:
    """Create the state table with its TTL (tests and local tiers; deployed tables come from CDK)."""
    client.create_table(**create_table_arguments(table_name))
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
