"""Bad input to every handler, and rules fuzzing: each malformed event is refused with a precise error naming the
field, before anything is stored, and is never retried forever; nothing but the rule engine's documented errors
escapes it, whatever the rule or the facts.

Malformed workflow definitions have their own suite (tests/unit/test_loader.py: 68 cases, each asserting the
file, path and field; tests/unit/test_fuzz.py fuzzes the loader and compiler); malformed rules too
(tests/unit/test_rules_validation.py). Here: the core state function's operations, the action step events, the
task queue's messages (with the SQS redrive that bounds their retries), and the rule engine under Hypothesis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coafi import aws
from coafi.compiler import compile_workflow
from coafi.compiler.asl import LAMBDA_SERVICE_ERRORS
from coafi.definitions import load_definitions
from coafi.errors import InvalidStateOperation, InvalidStepEvent, PermanentError
from coafi.rules import RuleEngine, RuleEvaluationError, RuleValidationError
from coafi.runtime.action import parse_step_event
from coafi.runtime.state_ops import parse_operation
from coafi.state import schema
from coafi.tasks.errors import InvalidTaskMessage
from coafi.tasks.runtime import parse_message

REPO = Path(__file__).resolve().parents[2]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Coafi-orders:bad-1"
BASE = {"executionId": EXECUTION, "workflowId": "orders"}

# -- the core state function's operations ---------------------------------------------------------------------

STATE_OPERATIONS = [
    pytest.param({}, "op (Unable to extract tag", id="empty"),
    pytest.param("start", "event (Input should be a valid dictionary", id="not-an-object"),
    pytest.param(None, "event (Input should be a valid dictionary", id="null"),
    pytest.param([BASE], "event (Input should be a valid dictionary", id="array"),
    pytest.param({**BASE, "op": "begin"}, "op (Input tag 'begin'", id="unknown-op"),
    pytest.param({**BASE, "op": 7}, "op (", id="op-not-a-string"),
    pytest.param({"op": "start", "workflowId": "orders"}, "start.executionId (Field required)", id="no-execution"),
    pytest.param({"op": "start", "executionId": EXECUTION}, "start.workflowId (Field required)", id="no-workflow"),
    pytest.param({**BASE, "op": "start", "executionId": ""}, "start.executionId (String should have at least 1",
                 id="empty-execution"),
    pytest.param({**BASE, "op": "start", "executionId": ["a"]}, "start.executionId (Input should be a valid string",
                 id="execution-not-a-string"),
    pytest.param({**BASE, "op": "start", "startTime": 5}, "start.startTime (Input should be a valid string",
                 id="start-time-number"),
    pytest.param({**BASE, "op": "start", "input": {}, "inputs": {}}, "start.inputs (Extra inputs are not permitted",
                 id="misspelt-field"),
    pytest.param({**BASE, "op": "finish"}, "finish.status (Field required)", id="finish-no-status"),
    pytest.param({**BASE, "op": "finish", "status": "DONE"}, "finish.status (Input should be 'SUCCEEDED' or 'FAILED'",
                 id="finish-unknown-status"),
    pytest.param({**BASE, "op": "finish", "status": "SUCCEEDED", "result": [1]},
                 "finish.result (Input should be a valid dictionary", id="finish-result-array"),
    pytest.param({**BASE, "op": "finish", "status": "FAILED", "error": "boom"},
                 "finish.error (Input should be a valid dictionary", id="finish-error-string"),
    pytest.param({**BASE, "op": "decide", "branch": "fast"}, "decide.stepId (Field required)", id="decide-no-step"),
    pytest.param({**BASE, "op": "decide", "stepId": "route"}, "decide.branch (Field required)",
                 id="decide-no-branch"),
    pytest.param({**BASE, "op": "decide", "stepId": "route", "branch": "a", "next": "b"},
                 "decide.next (Input should be a valid list", id="decide-next-string"),
    pytest.param({**BASE, "op": "decide", "stepId": "route", "branch": "a", "skipped": [{"stepName": "x"}]},
                 "decide.skipped.0.stepId (Field required)", id="decide-skipped-without-id"),
    pytest.param({**BASE, "op": "step", "stepId": "wait", "status": "RUNNING"}, "step.stepType (Field required)",
                 id="step-no-type"),
    pytest.param({**BASE, "op": "step", "stepId": "wait", "stepType": "wait", "status": "SKIPPED"},
                 "step.status (Input should be 'RUNNING', 'SUCCEEDED' or 'FAILED'", id="step-bad-status"),
    pytest.param({**BASE, "op": "step", "stepType": "wait", "status": "RUNNING"}, "step.stepId (Field required)",
                 id="step-no-id"),
]


@pytest.mark.parametrize(("event", "message"), STATE_OPERATIONS)
def test_a_malformed_state_operation_names_the_field(event: Any, message: str) -> None:
    with pytest.raises(InvalidStateOperation) as caught:
        parse_operation(event)
    assert str(caught.value).startswith("not a COAFI state operation: ")
    assert message in str(caught.value)
    assert isinstance(caught.value, PermanentError)


def test_a_state_operation_error_lists_every_wrong_field_without_echoing_values() -> None:
    secret = "card 4111 1111 1111 1111"
    with pytest.raises(InvalidStateOperation) as caught:
        parse_operation({**BASE, "op": "step", "executionId": "", "stepId": secret * 0, "stepType": 1,
                         "status": "RUNNING", "note": secret})
    text = str(caught.value)
    assert "step.executionId" in text and "step.stepType" in text and "step.note" in text
    assert secret not in text


# -- action step events ---------------------------------------------------------------------------------------

CONTEXT = {"executionId": EXECUTION, "workflowId": "orders", "stepId": "charge"}
STEP_EVENTS = [
    pytest.param({}, "context (Field required)", id="empty"),
    pytest.param({"input": {"a": 1}}, "context (Field required)", id="no-context"),
    pytest.param({"context": "charge"}, "context (Input should be a valid dictionary", id="context-string"),
    pytest.param({"context": {**CONTEXT, "executionId": ""}}, "context.executionId (String should have at least 1",
                 id="empty-execution"),
    pytest.param({"context": {"workflowId": "orders", "stepId": "charge"}}, "context.executionId (Field required)",
                 id="no-execution"),
    pytest.param({"context": {"executionId": EXECUTION, "stepId": "charge"}}, "context.workflowId (Field required)",
                 id="no-workflow"),
    pytest.param({"context": {"executionId": EXECUTION, "workflowId": "orders"}}, "context.stepId (Field required)",
                 id="no-step"),
    pytest.param({"context": {**CONTEXT, "attempt": "second"}}, "context.attempt (Input should be a valid integer",
                 id="attempt-text"),
    pytest.param({"context": CONTEXT, "parameters": [1, 2]}, "parameters (Input should be a valid dictionary",
                 id="parameters-array"),
    pytest.param({"context": CONTEXT, "steps": "generateContent"}, "steps (Input should be a valid dictionary",
                 id="steps-string"),
]


@pytest.mark.parametrize(("event", "message"), STEP_EVENTS)
def test_a_malformed_step_event_names_the_field(event: Any, message: str) -> None:
    with pytest.raises(InvalidStepEvent) as caught:
        parse_step_event(event)
    assert message in str(caught.value)
    assert "to call one by hand send" in str(caught.value)  # says what a valid event looks like


# -- task queue messages --------------------------------------------------------------------------------------

TASK = {"id": "t-1", "type": "generate-content", "payload": {}}
TASK_MESSAGES = [
    pytest.param("", "the body is not JSON (Expecting value", id="empty-body"),
    pytest.param("not json at all", "the body is not JSON (Expecting value", id="not-json"),
    pytest.param("[1, 2]", "body (Input should be a valid dictionary", id="json-array"),
    pytest.param(json.dumps({"taskId": "t-1"}), "kind (Field required)", id="no-kind"),
    pytest.param(json.dumps({"kind": "other.thing", "taskId": "t-1"}), "kind (Input should be 'coafi.task')",
                 id="wrong-kind"),
    pytest.param(json.dumps({"kind": "coafi.task"}), "taskId (Field required)", id="no-task-id"),
    pytest.param(json.dumps({"kind": "coafi.task", "taskId": "bad id!"}), "taskId (String should match pattern",
                 id="task-id-characters"),
    pytest.param(json.dumps({"kind": "coafi.task", "taskId": "t-1", "task": {**TASK, "priority": "high"}}),
                 "task.priority (Input should be a valid integer", id="priority-text"),
    pytest.param(json.dumps({"kind": "coafi.task", "taskId": "t-1", "task": {"id": "t-1", "payload": {}}}),
                 "task.type (Field required)", id="task-without-type"),
    pytest.param(json.dumps({"kind": "coafi.task", "taskId": "t-1", "task": "generate"}),
                 "task (Input should be a valid dictionary", id="task-not-an-object"),
]


@pytest.mark.parametrize(("body", "field"), TASK_MESSAGES)
def test_a_malformed_task_message_is_refused_naming_the_field(body: str, field: str) -> None:
    with pytest.raises(InvalidTaskMessage) as caught:
        parse_message(body)
    text = str(caught.value)
    assert text.startswith("not a COAFI task message")
    assert field in text
    assert isinstance(caught.value, PermanentError)


def test_the_bad_input_suites_hold_at_least_forty_cases() -> None:
    """The issue's bar: at least 40 malformed definitions, rules and events, each with its precise error."""
    import tests.unit.test_loader as loader

    events = len(STATE_OPERATIONS) + len(STEP_EVENTS) + len(TASK_MESSAGES)
    assert events >= 40
    assert len(loader.CASES) >= 40


# -- through the real handlers, on moto: refused before anything is stored, never retried forever -----------


@pytest.fixture(scope="module")
def cloud(fixture_project: Path, repo_root: Path) -> Iterator[Any]:
    from coafi.testing import InProcessCloud

    definitions = load_definitions([fixture_project / "statemachines" / "diamond.yaml"])
    with InProcessCloud(fixture_project, definitions=definitions, core_root=repo_root) as cloud:
        yield cloud


def table_items() -> list[dict[str, Any]]:
    from coafi.testing.inprocess import TABLE

    return list(aws.client("dynamodb").scan(TableName=TABLE)["Items"])


def invoke(function: str, event: Any) -> dict[str, Any]:
    response = aws.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return dict(json.loads(response["Payload"].read()))


def test_the_state_function_refuses_bad_operations_and_stores_nothing(cloud: Any) -> None:
    from coafi.testing.inprocess import STATE_FUNCTION

    before = table_items()
    for event in ({**BASE, "op": "finish", "status": "DONE"}, {**BASE, "op": "step", "stepId": "x"}, {"op": "start"}):
        error = invoke(STATE_FUNCTION, event)
        assert error["errorType"] == "InvalidStateOperation", error
        assert "not a COAFI state operation" in error["errorMessage"]
    assert table_items() == before


def test_an_action_refuses_a_bad_step_event_and_stores_nothing(cloud: Any) -> None:
    action = next(name for name in cloud.handlers if not name.startswith("coafi"))
    before = table_items()
    error = invoke(action, {"context": {"workflowId": "orders", "stepId": "charge"}, "input": {}})
    assert error["errorType"] == "InvalidStepEvent", error
    assert "context.executionId (Field required)" in error["errorMessage"]
    assert table_items() == before


def test_state_machines_never_retry_bad_input_to_the_state_function(fixture_project: Path) -> None:
    """The state function's tasks retry only Lambda service errors: an InvalidStateOperation fails at once. And
    no retrier anywhere retries without bound."""
    for definition in load_definitions([REPO / "statemachines", fixture_project / "statemachines"]):
        asl = compile_workflow(definition).asl
        for name, state in _states(asl):
            for retrier in state.get("Retry", []):
                # 0 is an error policy's "never retry" for permanent errors (bad input among them)
                assert 0 <= retrier["MaxAttempts"] <= 10, f"{definition.id}.{name}: {retrier}"
            if "StateFunctionArn" in json.dumps(state.get("Parameters", {})):
                errors = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
                assert errors <= set(LAMBDA_SERVICE_ERRORS), f"{definition.id}.{name} retries {errors}"


def _states(asl: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in asl["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch)


def test_a_poison_task_message_goes_to_the_dead_letter_queue_after_its_receives(cloud: Any) -> None:
    """SQS bounds the retries: after maxReceiveCount deliveries the message is in the DLQ, unchanged (no data
    lost); the dispatcher never created a task record for it."""
    from coafi.tasks import DispatcherSettings, TaskDispatcher
    from coafi.tasks.runtime import DispatcherRuntime
    from coafi.tasks.testing import FakeLambdaContext, create_task_resources, receive, sqs_event
    from coafi.testing.inprocess import TABLE

    resources = create_task_resources(max_receive_count=2)
    runtime = DispatcherRuntime(TaskDispatcher(DispatcherSettings(table_name=TABLE, action_functions={},
                                                                  workflow_arns={})), concurrency=1)
    body = json.dumps({"kind": "coafi.task", "taskId": "bad id!", "task": {"type": "x"}})
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)
    tasks_before = [i for i in table_items() if i[schema.PARTITION_KEY]["S"].startswith("TASK#")]
    for _ in range(2):
        messages = receive(resources.queue_url)
        assert [m["Body"] for m in messages] == [body]
        response = runtime.handle(sqs_event(messages, resources.queue_arn), FakeLambdaContext())
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [messages[0]["MessageId"]]
        for message in messages:  # a failed record becomes visible again at once (as after its timeout)
            sqs.change_message_visibility(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
    assert receive(resources.queue_url) == []  # the third receive moved it to the DLQ
    dead = receive(resources.dead_letter_url)
    assert [m["Body"] for m in dead] == [body]
    assert [i for i in table_items() if i[schema.PARTITION_KEY]["S"].startswith("TASK#")] == tasks_before


# -- the rule engine under Hypothesis -------------------------------------------------------------------------

OPERATORS = ["equal", "notEqual", "in", "notIn", "contains", "doesNotContain", "lessThan", "lessThanInclusive",
             "greaterThan", "greaterThanInclusive", "equals", "", "someFact:equal", "everyValue:in", "not:contains",
             "swap:lessThan", "nope:equal"]
PATHS = ["$", "$.a", "$.a.b", "$[0]", "$.a[*]", "$..b", "$.a[?(@.b > 1)]", "$[", "a.b", "$.constructor", ""]
FACTS = ["a", "b", "user", "", "constructor", "__proto__"]
json_scalars = st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True, width=32) | \
    st.sampled_from(["", "a", "b", "1", "NaN", "true", "[object Object]"])
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.sampled_from(["a", "b", "fact", "c"]), inner, max_size=3),
                           max_leaves=8)


def leaf_conditions() -> st.SearchStrategy[Any]:
    valid = st.fixed_dictionaries(
        {"fact": st.sampled_from(FACTS), "operator": st.sampled_from(OPERATORS), "value": json_values},
        optional={"path": st.sampled_from(PATHS), "params": json_values, "priority": json_values},
    )
    fact_value = st.fixed_dictionaries({"fact": st.sampled_from(FACTS)}, optional={"path": st.sampled_from(PATHS)})
    compared_to_fact = st.fixed_dictionaries(
        {"fact": st.sampled_from(FACTS), "operator": st.sampled_from(OPERATORS), "value": fact_value})
    return valid | compared_to_fact | st.fixed_dictionaries({"condition": st.sampled_from(["vip", "nowhere", ""])}) \
        | json_values


def conditions() -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf_conditions(),
        lambda inner: st.fixed_dictionaries({"all": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"any": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"not": inner})
        | st.dictionaries(st.sampled_from(["all", "any", "not", "priority"]), inner, min_size=2, max_size=3),
        max_leaves=6,
    )


rules = st.fixed_dictionaries(
    {"conditions": conditions(), "event": st.fixed_dictionaries({"type": st.sampled_from(["t", ""])},
                                                                optional={"params": json_values}) | json_values},
    optional={"name": json_values, "priority": json_values, "onSuccess": json_values},
) | json_values
facts = st.dictionaries(st.sampled_from(FACTS), json_values, max_size=4)
JSON_PATH_PROBLEM = re.compile(r"^\$(\.|\[|$)")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=rules, facts=facts, allow_undefined=st.booleans())
def test_arbitrary_rules_and_facts_raise_only_the_documented_errors(rule: Any, facts: dict[str, Any],
                                                                    allow_undefined: bool) -> None:
    engine = RuleEngine(allow_undefined_facts=allow_undefined)
    engine.set_condition("vip", {"all": [{"fact": "user", "path": "$.vip", "operator": "equal", "value": True}]})
    try:
        compiled = engine.compile(rule)
    except RuleValidationError as exc:
        assert exc.problems, "a validation error lists its problems"
        for problem in exc.problems:
            assert JSON_PATH_PROBLEM.match(problem.path), f"problem path {problem.path!r} is not a JSONPath"
            assert problem.message
        return
    try:
        result = engine.evaluate(compiled, facts)
    except RuleEvaluationError as exc:
        assert str(exc)
        return
    json.dumps(result.to_dict(conditions=True), allow_nan=True)  # JSON-safe whatever the facts held


@settings(max_examples=150, deadline=None)
@given(rules=st.lists(rules, max_size=4), facts=facts)
def test_a_run_of_many_arbitrary_rules_raises_only_the_documented_errors(rules: list[Any],
                                                                         facts: dict[str, Any]) -> None:
    engine = RuleEngine(allow_undefined_facts=True)
    for rule in rules:
        try:
            engine.add_rule(rule)
        except RuleValidationError:
            continue
    try:
        outcome = engine.run(facts)
    except RuleEvaluationError:
        return
    assert len(outcome.results) + len(outcome.failure_results) == len(outcome.all)
