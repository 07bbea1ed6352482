"""Existing Lambda functions used as actions by ARN, run in process (their own module: one cloud at a time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coafi.testing import InProcessCloud


def test_an_existing_lambda_by_arn_runs_and_is_recorded_around(repo_root: Path, fixture_project: Path) -> None:
    from coafi.definitions import validate_definition

    arn = "arn:aws:lambda:us-east-1:123456789012:function:legacy-billing"
    calls: list[dict[str, Any]] = []

    def legacy_billing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"invoice": f"INV-{event['input']['order']}"}

    definition = validate_definition({
        "id": "billing", "name": "Billing", "version": "1",
        "steps": [{"id": "bill", "type": "task", "action": arn, "parameters": {"currency": "EUR"}},
                  {"id": "confirm", "type": "task", "action": "echo", "dependencies": ["bill"]}],
    }, "billing.yaml", actions={"echo"})
    with InProcessCloud(fixture_project, definitions=[definition], core_root=repo_root,
                        extra_handlers={"legacy-billing": legacy_billing}) as cloud:
        result = cloud.run("billing", {"order": 42})
    assert result.status == "SUCCEEDED", result.cause
    assert calls[0]["parameters"] == {"currency": "EUR"} and calls[0]["context"]["stepId"] == "bill"
    bill = result.step("bill")
    assert bill.status == "SUCCEEDED" and bill.output == {"invoice": "INV-42"}
    assert bill.startedAt is not None and bill.durationMs is not None
    assert result.step("confirm").output["saw"] == ["bill"]
