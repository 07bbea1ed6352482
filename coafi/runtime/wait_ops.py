"""The state function's ``wait`` op: a callback or signal step starts waiting (docs/waits.md).

Invoked by the step's ``.waitForTaskToken`` Task (``coafi.compiler.waits``). Its return value is ignored by
Step Functions: the step ends when its token is completed, failed or times out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict

from coafi.engine.waits import Waits, WaitStart


class WaitOp(WaitStart):
    model_config = ConfigDict(extra="forbid")

    op: Literal["wait"]
    enteredAt: str = ""


def handle_wait_operation(event: dict[str, Any], waits: Waits | None = None) -> dict[str, Any]:
    operation = WaitOp.model_validate(event)
    delivered = (waits or Waits.from_env()).begin_wait(operation)
    return {"waiting": operation.stepType, "stepId": operation.stepId,
            "delivered": [{"signal": d.signal, "seq": d.seq, "stepId": d.waiter.stepId} for d in delivered]}
