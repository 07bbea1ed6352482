"""The state function's grants for callback and signal steps: the app's bus, task responses of the stack's
machines only."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synth


def _state_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    logical_id = synth.function_id("COAFI state function of Coafi: records executions and steps")
    return logical_id, synth.resources[logical_id]


def _statements(synth: Synth, function_id: str) -> list[dict[str, Any]]:
    return synth.role_statements(synth.resources[function_id]["Properties"]["Role"]["Fn::GetAtt"][0])


def test_state_function_may_put_events_on_the_apps_bus_only(sample: Synth) -> None:
    function_id, function = _state_function(sample)
    bus_id = next(iter(sample.of_type("AWS::Events::EventBus")))
    env = function["Properties"]["Environment"]["Variables"]
    assert env["COAFI_EVENT_BUS_NAME"] == {"Ref": bus_id}
    puts = [s for s in _statements(sample, function_id) if s["Action"] == "events:PutEvents"]
    assert puts == [{"Action": "events:PutEvents", "Effect": "Allow", "Resource": {"Fn::GetAtt": [bus_id, "Arn"]}}]


def test_state_function_completes_tokens_of_the_stacks_machines_only(sample: Synth) -> None:
    function_id, _ = _state_function(sample)
    (statement,) = [s for s in _statements(sample, function_id)
                    if "states:SendTaskSuccess" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert sorted(statement["Action"]) == ["states:SendTaskFailure", "states:SendTaskSuccess"]
    parts = statement["Resource"]["Fn::Join"][1]
    assert parts[-1] == ":stateMachine:Coafi_*"
    assert "states" in "".join(p for p in parts if isinstance(p, str))
