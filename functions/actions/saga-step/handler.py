"""A step of the order saga sample (statemachines/order-saga.yaml): does its step and says so.

Deterministic on purpose: it fails with ``StepRefused`` (a permanent error: not retried) exactly when the
workflow input names this step in ``failAt``, so a test chooses where the saga breaks."""

from __future__ import annotations

from typing import Any

from coafi.errors import PermanentError
from coafi.runtime import StepEvent, action


class StepRefused(PermanentError):
    """The input asked this step to fail (``failAt``)."""


@action
def handler(event: StepEvent) -> dict[str, Any]:
    step = event.context.stepId
    data = event.input if isinstance(event.input, dict) else {}
    if data.get("failAt") == step:
        raise StepRefused(f"step '{step}' refused order {data.get('orderId')!r} (input.failAt)")
    return {"step": step, "orderId": data.get("orderId"), "done": True, **event.parameters}
