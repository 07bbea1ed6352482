"""The rule registry in DynamoDB (moto): versioned conditional writes, the design's API, numbers round-tripped."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coafi.rules import RuleConflictError, RuleEngine, RuleNotFoundError, RuleStore, RuleValidationError
from coafi.rules.dynamo import RULES_PK, DynamoRuleStore, from_dynamo, to_dynamo
from coafi.state import schema
from tests.conftest import MOTO_TABLE

TABLE = MOTO_TABLE


@pytest.fixture
def store(moto_table: str) -> DynamoRuleStore:
    return DynamoRuleStore(moto_table)


def rule(rule_id: str, category: str = "pricing", threshold: Any = 100, **extra: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "category": category,
        "description": f"{rule_id} rule",
        "conditions": {"all": [{"fact": "total", "operator": "greaterThan", "value": threshold}]},
        **extra,
    }


def items(store: DynamoRuleStore) -> list[dict[str, Any]]:
    return list(store.client.scan(TableName=TABLE)["Items"])


def test_it_is_a_rule_store(store: DynamoRuleStore) -> None:
    assert isinstance(store, RuleStore)


def test_register_look_up_evaluate_and_unregister(store: DynamoRuleStore) -> None:
    engine = RuleEngine(store=store)
    stored = engine.register_rule(rule("big-order", event={"type": "discount", "params": {"pct": 5}}, priority=2))
    assert stored.version == 1 and stored.priority == 2
    engine.registerRule(rule("vip", category="loyalty", enabled=False))
    engine.register_rule(rule("huge-order", threshold=1000))

    assert engine.get_rule_by_id("big-order") == stored
    assert engine.getRuleById("nope") is None
    assert [r.id for r in engine.get_rules_by_category("pricing")] == ["big-order", "huge-order"]
    assert [r.id for r in engine.getRulesByCategory("loyalty")] == ["vip"]
    assert [r.id for r in engine.list_rules()] == ["big-order", "huge-order", "vip"]
    assert engine.get_rule_by_id("vip").enabled is False  # type: ignore[union-attr]

    result = engine.evaluate_rule("big-order", {"total": 150})
    assert (result.satisfied, result.event) == (True, {"type": "discount", "params": {"pct": 5}})
    assert [r.name for r in engine.evaluate_rules(None, {"total": 2000})] == ["big-order", "huge-order"]  # no vip

    assert engine.unregister_rule("vip") and not engine.unregisterRule("vip")
    with pytest.raises(RuleNotFoundError, match="no rule with id 'vip'"):
        engine.evaluate_rule("vip", {})


def test_rules_live_in_their_own_partition_of_the_state_table(store: DynamoRuleStore) -> None:
    from coafi.rules.models import Rule

    store.put(Rule.model_validate(rule("a")), source="pricing.json")
    (item,) = items(store)
    assert item[schema.PARTITION_KEY] == {"S": RULES_PK} and item[schema.SORT_KEY] == {"S": "RULE#a"}
    assert not RULES_PK.startswith(("EXEC#", "TASK#")) and "idxStatus" not in item  # never in the state indexes
    assert item["version"] == {"N": "1"} and item["source"] == {"S": "pricing.json"} and "updatedAt" in item
    assert item["conditions"]["M"]["all"]["L"][0]["M"]["value"] == {"N": "100"}  # a map, readable in the console


def test_every_write_is_the_next_version_and_unset_fields_are_removed(store: DynamoRuleStore) -> None:
    engine = RuleEngine(store=store)
    engine.register_rule(rule("r", event={"type": "x"}, onSuccess={"notify": True}))
    second = engine.register_rule(rule("r"))
    assert second.version == 2 and second.event is None and second.on_success is None
    assert "event" not in items(store)[0] and "onSuccess" not in items(store)[0]


def test_a_stale_editor_gets_a_conflict_naming_the_rule_and_both_versions(store: DynamoRuleStore) -> None:
    alice, bob = RuleEngine(store=store), RuleEngine(store=DynamoRuleStore(TABLE))
    alice.register_rule(rule("limit"))
    seen_by_alice = alice.get_rule_by_id("limit")
    seen_by_bob = bob.get_rule_by_id("limit")
    assert seen_by_alice is not None and seen_by_bob is not None and seen_by_bob.version == 1

    alice.register_rule(rule("limit", threshold=200), expected_version=seen_by_alice.version)
    with pytest.raises(RuleConflictError) as caught:
        bob.register_rule(rule("limit", threshold=300), expected_version=seen_by_bob.version)
    assert (caught.value.rule_id, caught.value.expected, caught.value.actual) == ("limit", 1, 2)
    assert "rule 'limit' is at version 2, not 1" in str(caught.value)
    kept = store.get("limit")
    assert kept is not None and kept.version == 2 and kept.conditions["all"][0]["value"] == 200  # Alice's change

    with pytest.raises(RuleConflictError, match=r"rule 'new-one' does not exist \(any more\), but version 1 was"):
        bob.register_rule(rule("new-one"), expected_version=1)  # expected an existing rule: nothing written
    assert store.get("new-one") is None


def test_concurrent_editors_of_one_version_exactly_one_wins(store: DynamoRuleStore) -> None:
    RuleEngine(store=store).register_rule(rule("hot"))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def edit(i: int) -> None:
        engine = RuleEngine(store=DynamoRuleStore(TABLE))
        barrier.wait()
        try:
            engine.register_rule(rule("hot", threshold=i), expected_version=1)
            outcomes.append(f"won {i}")
        except RuleConflictError as exc:
            outcomes.append(f"conflict {exc.actual}")

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("conflict 2") == 7
    kept = store.get("hot")
    assert kept is not None and kept.version == 2
    assert f"won {kept.conditions['all'][0]['value']}" == winners[0]


def test_conditional_delete(store: DynamoRuleStore) -> None:
    engine = RuleEngine(store=store)
    engine.register_rule(rule("d"))
    engine.register_rule(rule("d"))
    with pytest.raises(RuleConflictError, match="'d' is at version 2, not 1"):
        store.delete("d", expected_version=1)
    assert store.delete("missing", expected_version=1) is False
    assert store.delete("d", expected_version=2) is True and store.get("d") is None


def test_delete_from_source_keeps_a_rule_another_file_took_over(store: DynamoRuleStore) -> None:
    from coafi.rules.models import Rule

    store.put(Rule.model_validate(rule("moved")), source="new.json")
    assert store.delete_from_source("moved", "old.json") is False and store.get("moved") is not None
    assert store.delete_from_source("moved", "new.json") is True and store.get("moved") is None


def test_malformed_rules_never_reach_the_table(store: DynamoRuleStore) -> None:
    engine = RuleEngine(store=store)
    bad = rule("bad")
    bad["conditions"]["all"][0]["operator"] = "greater"
    with pytest.raises(RuleValidationError, match=r"\$\.conditions\.all\[0\]\.operator: unknown operator 'greater'"):
        engine.register_rule(bad)
    assert items(store) == []


def test_numbers_come_back_as_the_rule_wrote_them_not_as_decimals(store: DynamoRuleStore) -> None:
    engine = RuleEngine(store=store)
    engine.register_rule(rule("n", threshold=0.1, event={"type": "x", "params": {"n": 3, "f": 2.5, "one": 1.0,
                                                                                  "list": [1, 0.25, True, None]}},
                              priority=3))
    stored = store.get("n")
    assert stored is not None
    value = stored.conditions["all"][0]["value"]
    assert value == 0.1 and type(value) is float
    assert stored.event == {"type": "x", "params": {"n": 3, "f": 2.5, "one": 1.0, "list": [1, 0.25, True, None]}}
    assert type(stored.event["params"]["n"]) is int and type(stored.event["params"]["one"]) is float
    assert engine.evaluate_rule("n", {"total": 0.2}).satisfied
    assert not engine.evaluate_rule("n", {"total": 0.1}).satisfied


def test_values_dynamodb_cannot_store_are_refused_with_the_path() -> None:
    with pytest.raises(ValueError, match=r"\$\.a\[1\]: nan cannot be stored"):
        to_dynamo({"a": [1, float("nan")]})
    assert from_dynamo(to_dynamo({"x": [1.5, 2, {"y": -0.0}]})) == {"x": [1.5, 2, {"y": -0.0}]}
