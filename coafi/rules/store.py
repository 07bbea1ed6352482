"""Where registered rules live. :class:`RuleStore` is the interface (the DynamoDB registry implements it
too); :class:`InMemoryRuleStore` keeps them in a dict."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from coafi.rules.errors import RuleConflictError

if TYPE_CHECKING:
    from coafi.rules.models import Rule

__all__ = ["InMemoryRuleStore", "RuleStore"]


@runtime_checkable
class RuleStore(Protocol):
    """Rules by id, versioned: every ``put`` stores the next version, and ``expected_version`` makes the
    write conditional (``None``: the rule must not exist yet or the caller does not care, see ``put``)."""

    def get(self, rule_id: str) -> Rule | None:
        """The current version of the rule, or ``None``."""
        ...

    def put(self, rule: Rule, *, expected_version: int | None = None) -> Rule:
        """Store ``rule`` as the next version and return it (with ``version`` set). With ``expected_version``
        the write only happens if the stored rule is at that version (:class:`RuleConflictError` otherwise)."""
        ...

    def delete(self, rule_id: str, *, expected_version: int | None = None) -> bool:
        """Remove the rule; ``False`` if there was none."""
        ...

    def list(self, *, category: str | None = None) -> list[Rule]:
        """Every rule (of ``category``), ordered by id."""
        ...


class InMemoryRuleStore:
    """A :class:`RuleStore` in memory (tests, the CLI, a Lambda's warm cache)."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        self._lock = threading.Lock()

    def get(self, rule_id: str) -> Rule | None:
        return self._rules.get(rule_id)

    def put(self, rule: Rule, *, expected_version: int | None = None) -> Rule:
        with self._lock:
            current = self._rules.get(rule.id)
            actual = current.version if current is not None else None
            if expected_version is not None and actual != expected_version:
                raise RuleConflictError(rule.id, expected_version, actual)
            stored = rule.model_copy(update={"version": (actual or 0) + 1})
            self._rules[rule.id] = stored
            return stored

    def delete(self, rule_id: str, *, expected_version: int | None = None) -> bool:
        with self._lock:
            current = self._rules.get(rule_id)
            if current is None:
                return False
            if expected_version is not None and current.version != expected_version:
                raise RuleConflictError(rule_id, expected_version, current.version)
            del self._rules[rule_id]
            return True

    def list(self, *, category: str | None = None) -> list[Rule]:
        rules = sorted(self._rules.values(), key=lambda r: r.id)
        return [r for r in rules if category is None or r.category == category]
