"""The registry's :class:`Rule`: a json-rules-engine rule plus the design's id, category, description and
enabled flag. Imported lazily (pydantic is not needed to evaluate plain rule JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

__all__ = ["Rule"]


class Rule(BaseModel):
    """A rule in the registry.

    ``conditions`` (``condition`` is accepted too) and ``event`` are json-rules-engine's; ``actions`` is the
    design's list of actions: without an ``event``, the rule's event is ``{"type": <id>, "params":
    {"actions": [...]}}`` (or just ``{"type": <id>}``). ``onSuccess``/``onFailure`` are carried into the
    results. ``version`` is set by the store on every write (optimistic concurrency for the registry).
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=256)
    name: str | None = None
    description: str = ""
    category: str = "default"
    conditions: dict[str, Any] = Field(validation_alias=AliasChoices("conditions", "condition"))
    event: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    priority: int = Field(default=1, ge=1)
    enabled: bool = True
    on_success: Any = Field(
        default=None, validation_alias=AliasChoices("onSuccess", "on_success"), serialization_alias="onSuccess"
    )
    on_failure: Any = Field(
        default=None, validation_alias=AliasChoices("onFailure", "on_failure"), serialization_alias="onFailure"
    )
    version: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _condition_reference(cls, data: Any) -> Any:
        # `condition: "name"` at the top is json-rules-engine's reference to a named condition
        if isinstance(data, dict) and "conditions" not in data and isinstance(data.get("condition"), str):
            data = {**data, "conditions": {"condition": data["condition"]}}
            del data["condition"]
        return data

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def engine_rule(self) -> dict[str, Any]:
        """The rule as json-rules-engine rule JSON (what the engine compiles)."""
        if self.event is not None:
            event = self.event
        elif self.actions:
            event = {"type": self.id, "params": {"actions": self.actions}}
        else:
            event = {"type": self.id}
        rule: dict[str, Any] = {
            "name": self.display_name,
            "conditions": self.conditions,
            "event": event,
            "priority": self.priority,
        }
        if self.on_success is not None:
            rule["onSuccess"] = self.on_success
        if self.on_failure is not None:
            rule["onFailure"] = self.on_failure
        return rule
