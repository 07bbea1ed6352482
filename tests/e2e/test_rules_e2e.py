"""Rules end to end on the embedded LocalStack: the deploy loaded statemachines/rules/ into the registry (through
the Custom::CoafiRuleFile resources), and content-review's decision routes on a registry rule and an inline rule."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from coafi import aws
from coafi.deploy import StackOutputs
from coafi.executions import wait_for_execution
from coafi.rules.dynamo import DynamoRuleStore
from coafi.rules.files import load_rule_files
from coafi.state import StateStore

pytestmark = pytest.mark.localstack

REPO_ROOT = Path(__file__).resolve().parents[2]
REVIEWS = {"priorityReview", "quickPublish", "standardReview"}


def test_the_deployed_rule_files_are_in_the_registry(stack: StackOutputs) -> None:
    files, problems = load_rule_files(REPO_ROOT / "statemachines" / "rules")
    assert not problems
    registry = DynamoRuleStore(stack.state_table_name)
    for loaded in files:
        for rule in loaded.rules:
            stored = registry.get(rule.id)
            assert stored is not None, f"{rule.id} of {loaded.file.name} is not in the registry"
            assert stored.model_dump(exclude={"version"}) == rule.model_dump(exclude={"version"})
            assert stored.version is not None and stored.version >= 1
    assert {r.id for r in registry.list(category="content-review")} >= {"priority-review", "long-form"}
    priority = registry.get("priority-review")
    assert priority is not None and priority.priority == 2 and isinstance(priority.priority, int)


def run(stack: StackOutputs, workflow_input: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    arn = aws.client("stepfunctions").start_execution(
        stateMachineArn=stack.workflow_arn("content-review"), name=f"e2e-rules-{uuid.uuid4()}",
        input=json.dumps(workflow_input))["executionArn"]
    store = StateStore(stack.state_table_name)
    description = wait_for_execution(arn, store, timeout=180)
    assert description["status"] == "SUCCEEDED", description.get("cause")
    steps = {s.stepId: s for s in store.list_steps(arn)}
    return description, {sid: (s.status, s.output) for sid, s in steps.items()}


@pytest.mark.parametrize(
    ("workflow_input", "taken", "branch"),
    [
        ({"requester": {"tier": "partner"}, "wordCount": 900}, "priorityReview", "choice-1"),  # the registry rule
        ({"topic": "cooking", "wordCount": 120}, "quickPublish", "choice-2"),  # the inline rule
    ],
)
def test_the_decision_takes_the_branch_its_rules_choose(
    stack: StackOutputs, workflow_input: dict[str, Any], taken: str, branch: str
) -> None:
    _, steps = run(stack, workflow_input)
    assert {sid: status for sid, (status, _) in steps.items()} == {
        "assess": "SUCCEEDED", "route": "SUCCEEDED", taken: "SUCCEEDED", **{r: "SKIPPED" for r in REVIEWS - {taken}}}
    assessed = steps["assess"][1]  # the rules step evaluated the content-review category
    assert {r["ruleId"] for r in assessed["results"]} == {"long-form", "priority-review"}
    assert assessed["satisfied"]["rule_priority_review"] is (taken == "priorityReview")
    decision = steps["route"][1]
    assert (decision["branch"], decision["next"]) == (branch, [taken])
    results = decision["rules"]["results"]
    assert results[0]["ruleId"] == "priority-review" and results[0]["version"] >= 1
    assert decision["rules"]["matched"] == ("c1" if branch == "choice-1" else "c2")
