"""In process (moto, real handlers): a workflow whose decision routes on a registry rule and an inline rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coafi.definitions import load_definitions
from coafi.testing import InProcessCloud

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def review_cloud() -> Iterator[InProcessCloud]:
    definitions = load_definitions([REPO_ROOT / "statemachines" / "content-review.yaml"])
    with InProcessCloud(REPO_ROOT, definitions=definitions) as cloud:
        yield cloud


@pytest.mark.parametrize(
    ("workflow_input", "taken", "branch", "satisfied"),
    [
        ({"topic": "legal", "wordCount": 100}, "priorityReview", "choice-1", {"c1": True, "c2": True}),
        ({"requester": {"tier": "partner"}, "wordCount": 900}, "priorityReview", "choice-1",
         {"c1": True, "c2": False}),
        ({"topic": "cooking", "wordCount": 120}, "quickPublish", "choice-2", {"c1": False, "c2": True}),
        ({"topic": "cooking", "wordCount": 900}, "standardReview", "default", {"c1": False, "c2": False}),
    ],
)
def test_a_decision_routes_on_a_named_rule_and_an_inline_rule(
    review_cloud: InProcessCloud, workflow_input: dict[str, Any], taken: str, branch: str, satisfied: dict[str, bool]
) -> None:
    result = review_cloud.run("content-review", workflow_input)
    assert result.status == "SUCCEEDED", result.cause
    statuses = {s.stepId: s.status for s in result.steps}
    reviews = {"priorityReview", "quickPublish", "standardReview"}
    assert statuses == {"assess": "SUCCEEDED", "route": "SUCCEEDED", taken: "SUCCEEDED",
                        **{r: "SKIPPED" for r in reviews - {taken}}}
    output = result.step("route").output
    assert (output["branch"], output["next"], output["rules"]["satisfied"]) == (branch, [taken], satisfied)
    assert output["rules"]["results"][0]["ruleId"] == "priority-review"
    assessed = result.step("assess").output  # the rules step: every enabled rule of its category
    assert [r["ruleId"] for r in assessed["results"]] == ["long-form", "priority-review"]
    assert assessed["satisfied"]["rule_priority_review"] is satisfied["c1"]
    assert assessed["satisfied"]["rule_long_form"] is (workflow_input.get("wordCount", 0) > 2000)
    assert [e["type"] for e in assessed["events"]] == (["priority-review"] if satisfied["c1"] else [])
    entered = result.entered_states()
    assert entered.index("assess") < entered.index("route.rules") < entered.index("route") \
        < entered.index(f"route.{branch}")
    assert not reviews - {taken} & set(entered)


def test_a_rule_the_registry_lost_fails_the_workflow_with_the_reason(review_cloud: InProcessCloud) -> None:
    from coafi.rules.dynamo import DynamoRuleStore
    from coafi.testing.inprocess import TABLE

    rules = DynamoRuleStore(TABLE)
    saved = rules.get("priority-review")
    assert saved is not None
    rules.delete("priority-review")
    try:
        result = review_cloud.run("content-review", {"topic": "legal"})
    finally:
        rules.put(saved, source="content-review.json")
    assert result.status == "FAILED"
    assert result.error == "RuleNotFoundError" and "priority-review" in (result.cause or "")
