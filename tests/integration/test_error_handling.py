"""Issue 5's error handler: classification, error policies (validation, compilation to Retry/Catch), the circuit
breaker shared through DynamoDB, escalation events; and the resilience-demo workflow run in process."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from coafi import aws
from coafi.compiler import compile_workflow
from coafi.definitions import DefinitionError, load_definition, load_definitions, validate_definition
from coafi.errors import PermanentError, TransientError
from coafi.resilience import errors
from coafi.resilience.circuit import CircuitBreaker, CircuitState
from coafi.resilience.classification import (
    PERMANENT_NAMES,
    TRANSIENT_NAMES,
    ErrorCategory,
    category_of_name,
    classify,
    typed,
)
from coafi.resilience.escalation import DETAIL_TYPE, SOURCE, escalation_for
from coafi.resilience.policies import ErrorPolicy
from coafi.resilience.registry import PolicyRegistry, register_project_policies
from coafi.runtime.action import StepEvent
from coafi.state import schema
from tests.conftest import atomic_dynamodb_requests

TABLE = "resilience-test"


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Op")


# -- classification -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "category"), [
    (errors.ThrottlingError("x"), ErrorCategory.TRANSIENT),
    (errors.CircuitOpen("payments"), ErrorCategory.TRANSIENT),
    (TimeoutError("slow"), ErrorCategory.TRANSIENT),
    (ConnectionResetError("reset"), ErrorCategory.TRANSIENT),
    (client_error("ThrottlingException", 400), ErrorCategory.TRANSIENT),
    (client_error("InternalServerError", 500), ErrorCategory.TRANSIENT),
    (client_error("ServiceUnavailable", 503), ErrorCategory.TRANSIENT),
    (errors.InvalidInput("bad"), ErrorCategory.PERMANENT),
    (client_error("ValidationException", 400), ErrorCategory.PERMANENT),
    (client_error("AccessDeniedException", 403), ErrorCategory.PERMANENT),
    (client_error("ResourceNotFoundException", 400), ErrorCategory.PERMANENT),
    (errors.SystemFault("invariant"), ErrorCategory.SYSTEM),
    (KeyError("bug"), ErrorCategory.SYSTEM),
    (TypeError("bug"), ErrorCategory.SYSTEM),
])
def test_errors_are_classified_transient_permanent_or_system(exc: BaseException, category: ErrorCategory) -> None:
    assert classify(exc) == category


def test_user_subclasses_classify_by_base_and_client_errors_get_typed_names() -> None:
    class RateLimited(TransientError):
        pass

    class Rejected(PermanentError):
        pass

    assert classify(RateLimited()) == ErrorCategory.TRANSIENT
    assert classify(Rejected()) == ErrorCategory.PERMANENT
    assert type(typed(client_error("ThrottlingException", 400))).__name__ == "ThrottlingError"
    assert type(typed(client_error("InternalFailure", 500))).__name__ == "DependencyUnavailable"
    assert type(typed(client_error("AccessDenied", 403))).__name__ == "AccessDenied"
    assert type(typed(client_error("NoSuchKey", 404))).__name__ == "NotFound"
    assert type(typed(client_error("SomethingOdd", 400))).__name__ == "InvalidInput"
    plain = ValueError("kept")
    assert typed(plain) is plain
    for cls in (errors.ThrottlingError, errors.DependencyTimeout, errors.DependencyUnavailable, errors.CircuitOpen):
        assert cls.__name__ in TRANSIENT_NAMES
    for permanent in (errors.InvalidInput, errors.AccessDenied, errors.NotFound):
        assert permanent.__name__ in PERMANENT_NAMES
    assert category_of_name("SystemFault") == ErrorCategory.SYSTEM
    assert category_of_name("NoSuchThing") is None


# -- policy validation ----------------------------------------------------------------------------------------

POLICY = {"id": "retry-transient", "errorTypes": ["transient"], "maxRetries": 3,
          "retryStrategy": {"type": "exponential", "intervalSeconds": 2, "backoffRate": 3, "maxDelaySeconds": 30},
          "escalationThreshold": {"attempts": 3}}


def definition(policies: list[Any], steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": "flow", "name": "Flow", "version": "1", "policies": policies,
            "steps": steps or [{"id": "a", "action": "echo"}, {"id": "b", "action": "echo", "dependencies": ["a"]}]}


def problems(data: Any) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, "flow.yaml")
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_an_inline_policy_keeps_the_design_fields_and_derives_its_actions() -> None:
    loaded = validate_definition(definition([POLICY]), "flow.yaml")
    (policy,) = loaded.policies
    assert isinstance(policy, ErrorPolicy)
    assert set(ErrorPolicy.model_fields) >= {"id", "errorTypes", "contextTypes", "maxRetries", "retryStrategy",
                                              "escalationThreshold", "actions"}
    assert policy.actions == ["retry", "escalate", "fail"]
    assert policy.contextTypes == ["*"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"maxRetries": -1}, "policies[0].maxRetries: Input should be greater than or equal to 0"),
    ({"errorTypes": ["permanent"]}, "policies[0].errorTypes: errorTypes[0] 'permanent' is a permanent error"),
    ({"errorTypes": ["States.ALL", "transient"]}, "policies[0].errorTypes: errorTypes: States.ALL"),
    ({"errorTypes": ["no spaces"]}, "policies[0].errorTypes: errorTypes[0] 'no spaces' is neither"),
    ({"contextTypes": ["lambda"]}, "policies[0].contextTypes: contextTypes[0] 'lambda' is not one of"),
    ({"actions": ["retry", "escalate", "fail", "continue"]}, "policies[0].actions: fail and continue exclude"),
    ({"actions": ["escalate", "fail"]}, "policies[0].actions: maxRetries is 3 but actions has no retry"),
    ({"escalationThreshold": {"attempts": 5}}, "policies[0].escalationThreshold: escalationThreshold.attempts (5)"
                                               " is never reached"),
    ({"retryStrategy": {"type": "fixed", "backoffRate": 2}}, "policies[0].retryStrategy.backoffRate: a fixed"),
    ({"retryStrategy": {"backofRate": 2}}, "policies[0].retryStrategy.backofRate: unknown field 'backofRate'; "
                                           "did you mean 'backoffRate'?"),
    ({"maxRetrys": 1}, "policies[0].maxRetrys: unknown field 'maxRetrys'; did you mean 'maxRetries'?"),
    ({"escalationThreshold": {"attempts": 2, "failures": 5}}, "policies[0].escalationThreshold: an "
                                                              "escalationThreshold needs exactly one of"),
])
def test_invalid_inline_policies_name_the_field(change: dict[str, Any], expected: str) -> None:
    found = problems(definition([{**POLICY, **change}]))
    assert any(p.startswith(expected) for p in found), found


def test_policy_files_are_validated_and_unknown_policies_are_errors_at_validate_time(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "good.yaml").write_text(json.dumps({**POLICY, "id": "good"}))
    (tmp_path / "policies" / "bad.yaml").write_text("id: bad\nerrorTypes: [transient]\nmaxRetries: 1000\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text(json.dumps(definition(["good", "goood"])))
    with pytest.raises(DefinitionError) as caught:
        load_definition(flow, actions={"echo"})
    found = {(Path(p.file).name, p.path, p.message) for p in caught.value.problems}
    assert ("bad.yaml", "maxRetries", "Input should be less than or equal to 99 (got 1000)") in found
    assert any(f == "flow.yaml" and path == "policies[1]" and "unknown error policy 'goood'" in m
               and "did you mean 'good'?" in m for f, path, m in found), found

    (tmp_path / "policies" / "bad.yaml").unlink()
    flow.write_text(json.dumps(definition(["good"])))
    loaded = load_definition(flow, actions={"echo"})
    assert [p.id for p in loaded.policies if isinstance(p, ErrorPolicy)] == ["good"]


# -- compilation ----------------------------------------------------------------------------------------------


def compiled_state(policies: list[Any], step: str = "a", **step_fields: Any) -> dict[str, Any]:
    steps = [{"id": "a", "action": "echo", **step_fields}, {"id": "b", "action": "echo", "dependencies": ["a"]}]
    asl = compile_workflow(validate_definition(definition(policies, steps), "flow.yaml")).asl
    states: dict[str, Any] = asl["States"]["coafi.run"]["Branches"][0]["States"]
    return states if step == "*" else states[step]


def test_transient_policy_compiles_to_backoff_with_full_jitter_and_permanent_to_no_retry() -> None:
    permanent = {"id": "no-retry", "errorTypes": ["permanent"]}
    state = compiled_state([POLICY, permanent])
    lambda_defaults, transient, never = state["Retry"]
    assert lambda_defaults["ErrorEquals"][0] == "Lambda.ServiceException"
    assert transient == {"ErrorEquals": transient["ErrorEquals"], "IntervalSeconds": 2, "MaxAttempts": 3,
                         "BackoffRate": 3.0, "JitterStrategy": "FULL", "MaxDelaySeconds": 30}
    assert {"ThrottlingError", "DependencyUnavailable", "CircuitOpen", "States.Timeout"} <= set(
        transient["ErrorEquals"])
    assert never == {"ErrorEquals": list(PERMANENT_NAMES), "MaxAttempts": 0}
    assert "Catch" not in state
    assert state["Parameters"]["Payload"]["context"]["errorPolicies"] == [
        {"id": "retry-transient", "errorTypes": ["transient"], "attempts": 3},
        {"id": "no-retry", "errorTypes": ["permanent"], "attempts": None}]


def test_a_catch_all_retry_never_retries_permanent_errors_and_the_steps_own_retry_policy_wins() -> None:
    everything = {"id": "everything", "errorTypes": ["States.ALL"], "maxRetries": 2}
    state = compiled_state([everything])
    *_, guard, catch_all = state["Retry"]
    assert guard == {"ErrorEquals": list(PERMANENT_NAMES), "MaxAttempts": 0}
    assert catch_all["ErrorEquals"] == ["States.ALL"] and catch_all["MaxAttempts"] == 2

    own = compiled_state([POLICY], retryPolicy={"maxAttempts": 5, "retryOn": ["ThrottlingError"]})
    names = [r["ErrorEquals"] for r in own["Retry"]]
    assert names[1] == ["ThrottlingError"] and own["Retry"][1]["MaxAttempts"] == 4
    assert "ThrottlingError" not in names[2]  # each name in the first retrier that names it


def test_continue_compiles_to_a_catch_that_joins_the_next_step_and_context_types_select_steps() -> None:
    lenient = {"id": "lenient", "errorTypes": ["NotFound"], "actions": ["continue"], "contextTypes": ["step:a"]}
    states = compiled_state([lenient], step="*")
    assert states["a"]["Catch"] == [{"ErrorEquals": ["NotFound"], "ResultPath": "$.steps.a", "Next": "a.continue"}]
    assert states["a.continue"]["Type"] == "Pass" and states["a.continue"]["Next"] == "b"
    assert "Catch" not in states["b"]  # contextTypes: only step a
    by_action = compiled_state([{**POLICY, "contextTypes": ["action:other"]}])
    assert len(by_action["Retry"]) == 1  # the Lambda service errors only


def test_policies_on_a_machine_that_moto_runs(tmp_path: Path) -> None:
    """MaxAttempts 0 and the continue Catch are accepted and behave on the emulator's interpreter."""
    project = tmp_path / "project"
    (project / "functions" / "actions" / "fail-once").mkdir(parents=True)
    (project / "functions" / "actions" / "fail-once" / "handler.py").write_text(
        "from coafi.runtime import action\n"
        "from coafi.resilience.errors import NotFound\n"
        "@action\n"
        "def handler(event):\n"
        "    raise NotFound('no such thing')\n")
    (project / "functions" / "actions" / "echo").mkdir(parents=True)
    (project / "functions" / "actions" / "echo" / "handler.py").write_text(
        "from coafi.runtime import action\n@action\ndef handler(event):\n    return {'saw': sorted(event.steps)}\n")
    lenient = {"id": "lenient", "errorTypes": ["permanent"], "actions": ["continue"]}
    data = definition([lenient, {"id": "all", "errorTypes": ["States.ALL"], "maxRetries": 3}],
                      [{"id": "a", "action": "fail-once"}, {"id": "b", "action": "echo", "dependencies": ["a"]}])
    from coafi.testing import InProcessCloud

    with InProcessCloud(project, definitions=[validate_definition(data, "flow.yaml")],
                        core_root=Path(__file__).resolve().parents[2]) as cloud:
        result = cloud.run("flow", {})
    assert result.status == "SUCCEEDED", result.cause
    assert result.step("a").status == "FAILED" and result.step("a").attempts == 1  # not retried
    assert result.step("b").output == {"saw": ["a"]}
    assert "a.continue" in result.entered_states()


def test_project_subclasses_reach_step_functions_under_their_category_name_unless_named() -> None:
    from coafi.resilience.runtime import by_category

    class RateLimited(TransientError):
        pass

    class Rejected(PermanentError):
        pass

    transient = [{"id": "p", "errorTypes": ["transient"], "attempts": None}]
    renamed = by_category(RateLimited("slow"), transient)
    assert type(renamed) is TransientError and str(renamed) == "RateLimited: slow"
    assert type(by_category(Rejected("no"), transient)) is Rejected  # its category is not one the step names
    named = [*transient, {"id": "retryPolicy", "errorTypes": ["RateLimited"], "attempts": None}]
    assert type(by_category(RateLimited("slow"), named)) is RateLimited  # named explicitly: kept
    known = errors.ThrottlingError("x")
    assert by_category(known, transient) is known  # Step Functions knows the name already


def test_a_project_subclass_of_transient_error_is_retried_by_a_category_policy(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "functions" / "actions" / "flaky").mkdir(parents=True)
    (project / "functions" / "actions" / "flaky" / "handler.py").write_text(
        "from coafi.errors import TransientError\n"
        "from coafi.runtime import action\n"
        "class RateLimited(TransientError):\n"
        "    pass\n"
        "@action\n"
        "def handler(event):\n"
        "    if event.context.attempt == 0:\n"
        "        raise RateLimited('try again')\n"
        "    return {'attempt': event.context.attempt}\n")
    policy = {"id": "retry", "errorTypes": ["transient"], "maxRetries": 1}
    data = definition([policy], [{"id": "a", "action": "flaky"}])
    from coafi.testing import InProcessCloud

    with InProcessCloud(project, definitions=[validate_definition(data, "flow.yaml")],
                        core_root=Path(__file__).resolve().parents[2]) as cloud:
        result = cloud.run("flow", {})
    assert result.status == "SUCCEEDED", result.cause
    assert result.step("a").attempts == 2 and result.step("a").output == {"attempt": 1}
    (failed,) = [e for e in result.history if e["type"] == "TaskFailed"]
    cause = json.loads(failed["taskFailedEventDetails"]["cause"])
    assert cause["errorType"] == "TransientError" and cause["errorMessage"] == "RateLimited: try again"


# -- moto fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "COAFI_TABLE_NAME": TABLE,
                       "COAFI_EVENT_BUS_NAME": "test-bus"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from coafi.config import function_settings

    aws._cached.cache_clear()
    function_settings.cache_clear()
    with mock_aws(), atomic_dynamodb_requests():
        schema.create_table(aws.client("dynamodb"), TABLE)
        yield
    aws._cached.cache_clear()
    function_settings.cache_clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def breaker(clock: Clock, **kwargs: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {"failure_threshold": 3, "window_seconds": 60, "open_seconds": 30,
                                "probe_seconds": 10, "table_name": TABLE, "clock": clock, **kwargs}
    return CircuitBreaker("payments", **settings)


class Dependency:
    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
        if not self.healthy:
            raise errors.DependencyUnavailable("down")
        return "ok"


# -- circuit breaker -------------------------------------------------------------------------------------------


def test_circuit_opens_after_n_failures_fails_fast_half_opens_and_closes(cloud: None) -> None:
    clock, dependency = Clock(), Dependency()
    circuit = breaker(clock)
    call = circuit(dependency)
    for _ in range(3):
        with pytest.raises(errors.DependencyUnavailable):
            call()
    status = circuit.status()
    assert status.state == CircuitState.OPEN and status.failures == 3
    with pytest.raises(errors.CircuitOpen) as fast:
        call()
    assert dependency.calls == 3  # failed fast: the dependency was not called
    assert fast.value.retry_after_seconds == pytest.approx(30)
    assert classify(fast.value) == ErrorCategory.TRANSIENT

    clock.advance(31)  # half-open: one probe; it fails -> open again
    with pytest.raises(errors.DependencyUnavailable):
        call()
    assert circuit.status().state == CircuitState.OPEN and dependency.calls == 4
    with pytest.raises(errors.CircuitOpen):
        call()

    clock.advance(31)
    dependency.healthy = True
    assert call() == "ok"  # the probe succeeds -> closed
    status = circuit.status()
    assert status.state == CircuitState.CLOSED and status.failures == 0
    assert call() == "ok"


def test_the_context_manager_form_counts_failures_and_closes_after_a_good_probe(cloud: None) -> None:
    clock, dependency = Clock(), Dependency()
    circuit = breaker(clock, failure_threshold=2)
    for _ in range(2):
        with pytest.raises(errors.DependencyUnavailable), circuit:
            dependency()
    with pytest.raises(errors.CircuitOpen), circuit:
        dependency()
    assert dependency.calls == 2
    clock.advance(31)
    dependency.healthy = True
    with circuit:
        assert dependency() == "ok"
    assert circuit.status().state == CircuitState.CLOSED


def test_failures_outside_the_window_and_permanent_errors_do_not_open_it(cloud: None) -> None:
    clock = Clock()
    circuit = breaker(clock)

    def invalid() -> None:
        raise errors.InvalidInput("caller's fault")

    for _ in range(5):
        with pytest.raises(errors.InvalidInput):
            circuit(invalid)()
    assert circuit.status().failures == 0
    call = circuit(Dependency())
    for _ in range(2):
        with pytest.raises(errors.DependencyUnavailable):
            call()
    clock.advance(61)  # the window is over: the next failure starts a new one
    with pytest.raises(errors.DependencyUnavailable):
        call()
    status = circuit.status()
    assert status.state == CircuitState.CLOSED and status.failures == 1


def test_only_one_caller_probes_a_half_open_circuit_and_a_lost_probe_is_taken_over(cloud: None) -> None:
    clock = Clock()
    first, second = breaker(clock), breaker(clock)  # two executions, one circuit
    call = first(Dependency())
    for _ in range(3):
        with pytest.raises(errors.DependencyUnavailable):
            call()
    clock.advance(31)
    assert first.before_call() is True  # took the probe...
    with pytest.raises(errors.CircuitOpen):
        second.before_call()  # ...so the other execution still fails fast
    clock.advance(11)  # the probe never reported (its Lambda died): taken over
    assert second.before_call() is True
    second.after_success(probe=True)
    assert first.status().state == CircuitState.CLOSED


def test_concurrent_failures_from_two_executions_open_the_circuit_once(cloud: None, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    from coafi import telemetry

    opened: list[dict[str, Any]] = []
    monkeypatch.setattr(telemetry, "increment_counter",
                        lambda name, labels=None, **_: opened.append({"name": name, **(labels or {})}))
    clock, dependency = Clock(), Dependency()
    threshold = 10
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def execution() -> None:
        circuit = breaker(clock, failure_threshold=threshold)  # each execution its own breaker object
        call = circuit(dependency)
        barrier.wait()
        for _ in range(12):
            try:
                call()
            except errors.CircuitOpen:
                outcomes.append("fast")
            except errors.DependencyUnavailable:
                outcomes.append("failed")

    threads = [threading.Thread(target=execution) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = breaker(clock).status()
    assert status.state == CircuitState.OPEN
    assert opened == [{"name": "CircuitOpened", "dependency": "payments"}]  # exactly one opener
    # every call that reached the dependency failed; the count crossed the threshold once. The other
    # execution's call in flight when the circuit opened may fail after it opened (counted or not).
    assert outcomes.count("failed") == dependency.calls
    assert threshold <= status.failures <= dependency.calls <= threshold + 1
    assert outcomes.count("fast") == 24 - dependency.calls


# -- escalation ------------------------------------------------------------------------------------------------


def step_event(attempt: int, rules: list[dict[str, Any]]) -> StepEvent:
    return StepEvent.model_validate({"context": {
        "executionId": "arn:aws:states:us-east-1:123456789012:execution:flow:run-1", "workflowId": "flow",
        "workflowVersion": "1", "stepId": "a", "stepName": "Step A", "action": "echo", "attempt": attempt,
        "errorPolicies": rules}, "input": {}})


def test_escalation_is_due_exactly_when_the_threshold_is_crossed() -> None:
    rules = [{"id": "retry-transient", "errorTypes": ["transient"], "attempts": 2}]
    boom = errors.DependencyUnavailable("down")
    assert escalation_for(step_event(0, rules), boom, rules) is None
    detail = escalation_for(step_event(1, rules), boom, rules)
    assert detail is not None and detail.attempts == 2 and detail.policyId == "retry-transient"
    assert escalation_for(step_event(2, rules), boom, rules) is None  # once, not at every later attempt
    assert escalation_for(step_event(1, rules), errors.InvalidInput("x"), rules) is None  # not its errorTypes


def test_a_failing_action_sends_the_escalation_event_to_the_bus(cloud: None) -> None:
    events, sqs = aws.client("events"), aws.client("sqs")
    events.create_event_bus(Name="test-bus")
    queue = sqs.create_queue(QueueName="escalations")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="esc", EventBusName="test-bus",
                    EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}))
    events.put_targets(Rule="esc", EventBusName="test-bus", Targets=[{"Id": "q", "Arn": queue_arn}])

    from coafi.runtime import action

    @action
    def handler(event: StepEvent) -> None:
        raise errors.ThrottlingError("slow down")

    rules = [{"id": "retry-transient", "errorTypes": ["transient"], "attempts": 2}]
    for attempt in (0, 1):
        with pytest.raises(errors.ThrottlingError):
            handler(step_event(attempt, rules).model_dump(), None)
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["source"] == SOURCE and event["detail-type"] == DETAIL_TYPE
    detail = event["detail"]
    assert detail["executionId"].endswith(":run-1") and detail["stepId"] == "a" and detail["workflowId"] == "flow"
    assert detail["error"] == {"type": "ThrottlingError", "message": "slow down", "category": "transient"}
    assert detail["attempts"] == 2 and detail["threshold"] == 2 and detail["policyId"] == "retry-transient"


def test_a_failures_threshold_escalates_once_per_window_across_executions(cloud: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from coafi.resilience import escalation

    monkeypatch.setattr(escalation, "_now", lambda: 1_700_000_100.0)
    rules = [{"id": "many-failures", "errorTypes": ["transient"], "attempts": None, "failures": 3,
              "windowSeconds": 600}]
    compiled = compiled_state([{"id": "many-failures", "errorTypes": ["transient"],
                                "escalationThreshold": {"failures": 3, "windowSeconds": 600}}])
    assert compiled["Parameters"]["Payload"]["context"]["errorPolicies"] == rules

    def fail(execution: str) -> Any:
        event = step_event(0, rules)
        event.context.executionId = execution
        return escalation_for(event, errors.DependencyUnavailable("down"), rules)

    sent = [fail(f"run-{i}") for i in range(5)]  # five executions, each failing once
    assert [d is not None for d in sent] == [False, False, True, False, False]
    detail = sent[2]
    assert detail is not None and detail.executionId == "run-2" and detail.failures == 3
    assert detail.threshold == 3 and detail.windowSeconds == 600 and detail.attempts == 1
    monkeypatch.setattr(escalation, "_now", lambda: 1_700_000_100.0 + 600)
    assert [fail(f"later-{i}") is not None for i in range(3)] == [False, False, True]  # a new window


def test_client_errors_reach_step_functions_as_typed_errors(cloud: None) -> None:
    from coafi.runtime import action

    @action
    def handler(event: StepEvent) -> None:
        raise client_error("ThrottlingException", 400)

    with pytest.raises(errors.ThrottlingError) as caught:
        handler(step_event(0, []).model_dump(), None)
    assert isinstance(caught.value.__cause__, ClientError)


# -- registry ---------------------------------------------------------------------------------------------------


def test_the_project_policies_are_registered_in_dynamodb(cloud: None, repo_root: Path) -> None:
    registry = PolicyRegistry(TABLE)
    registry.register_error_policy(ErrorPolicy.model_validate({"id": "stale", "errorTypes": ["X"]}))
    assert register_project_policies(repo_root, TABLE) == 2
    assert sorted(p.id for p in registry.list_policies()) == ["permanent-fail", "transient-retry"]  # stale gone
    assert [p.id for p in registry.workflow_policies("resilience-demo")] == ["transient-retry", "permanent-fail"]
    item = aws.client("dynamodb").get_item(TableName=TABLE, Key={"PK": {"S": "ERRORPOLICY"},
                                                                 "SK": {"S": "POLICY#transient-retry"}})["Item"]
    assert item["source"] == {"S": "statemachines/policies/transient-retry.yaml"}  # relative: no machine's path
    found = registry.get_error_policy("ThrottlingError", "task")
    assert found is not None and found.id == "transient-retry"
    assert registry.getErrorPolicy("NotFound", workflow_id="resilience-demo") is not None
    assert registry.get_error_policy("KeyError") is None


# -- the demo workflow in process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(repo_root: Path) -> Iterator[Any]:
    from coafi.testing import InProcessCloud

    definitions = [d for d in load_definitions([repo_root / "statemachines"]) if d.id == "resilience-demo"]
    with InProcessCloud(repo_root, definitions=definitions) as cloud:
        yield cloud


def test_demo_step_failing_twice_transiently_then_succeeding(demo: Any) -> None:
    result = demo.run("resilience-demo", {"dependency": f"dep-{uuid.uuid4()}", "key": "k", "failTimes": 2})
    assert result.status == "SUCCEEDED", result.cause
    step = result.step("callDependency")
    assert step.status == "SUCCEEDED" and step.attempts == 3 and step.output["calls"] == 3
    failed = [e for e in result.history if e["type"] == "TaskFailed"]
    assert [json.loads(e["taskFailedEventDetails"]["cause"])["errorType"] for e in failed] == [
        "DependencyUnavailable", "DependencyUnavailable"]


def test_demo_invalid_input_is_permanent_and_not_retried(demo: Any) -> None:
    result = demo.run("resilience-demo", {"dependency": "no spaces allowed"})
    assert result.status == "FAILED" and result.error == "InvalidInput"
    assert result.step("callDependency").attempts == 1
