"""Callback and signal steps: definitions, ASL, and the buffering protocol on moto's DynamoDB.

Step Functions' side (SendTaskSuccess/Failure) is a recorder here that, like Step Functions, accepts a token
once and refuses dead ones; the in-process tier (test_waits_inprocess.py) runs the same code against moto's
real Step Functions, and tests/e2e/test_waits_e2e.py on LocalStack.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from coafi import aws
from coafi.cli.main import main
from coafi.compiler import compile_workflow
from coafi.definitions import DefinitionError, WorkflowDefinition, validate_definition
from coafi.engine.wait_commands import WAIT_COMMANDS, SignalWorkflowCommand
from coafi.engine.waits import (
    MAX_OUTPUT_BYTES,
    CompleteTaskRequest,
    ExecutionFinished,
    FailTaskRequest,
    NotWaiting,
    SignalRequest,
    TaskTokenNotActive,
    TaskTokens,
    UnknownExecution,
    Waits,
    WaitStart,
    complete_task,
    fail_task,
    heartbeat_task,
    signal_workflow,
)
from coafi.state import StateStore
from coafi.state.codec import now_iso
from tests.conftest import MOTO_TABLE

TABLE = MOTO_TABLE
EXEC = "arn:aws:states:us-east-1:123456789012:execution:coafi-approval:run-1"


class RecordingTokens(TaskTokens):
    """Step Functions' task-token side: a token completes once; a dead token (timed out) is refused."""

    def __init__(self) -> None:
        super().__init__(client=object())
        self.lock = threading.Lock()
        self.succeeded: dict[str, Any] = {}
        self.failed: dict[str, tuple[str, str]] = {}
        self.dead: set[str] = set()
        self.beats: list[str] = []
        self.unreachable: set[str] = set()  # the next call with this token fails as a network error would

    def _settle(self, token: str) -> None:
        if token in self.unreachable:
            self.unreachable.discard(token)
            raise ConnectionError("Step Functions could not be reached")
        if token in self.dead or token in self.succeeded or token in self.failed:
            raise TaskTokenNotActive(f"token {token} is not active")

    def succeed(self, token: str, output: Any) -> None:
        with self.lock:
            self._settle(token)
            self.succeeded[token] = json.loads(json.dumps(output))

    def fail(self, token: str, error: str, cause: str) -> None:
        with self.lock:
            self._settle(token)
            self.failed[token] = (error, cause)

    def heartbeat(self, token: str) -> None:
        with self.lock:
            self._settle(token)
            self.beats.append(token)


@pytest.fixture
def store(moto_table: str) -> StateStore:
    state = StateStore(moto_table)
    state.start_execution(EXEC, "approval", "1", {"draft": 1}, now_iso())
    return state


@pytest.fixture
def tokens() -> RecordingTokens:
    return RecordingTokens()


@pytest.fixture
def waits(store: StateStore, tokens: RecordingTokens) -> Waits:
    return Waits(store, tokens=tokens)


def start(step_id: str, token: str, *, kind: str = "signal", signal: str | None = "go") -> WaitStart:
    return WaitStart(executionId=EXEC, workflowId="approval", stepId=step_id, stepType=kind,
                     taskToken=token, signal=signal if kind == "signal" else None)


def send(waits: Waits, payload: Any, name: str = "go", **kwargs: Any) -> Any:
    return waits.signal_workflow(SignalRequest(executionId=EXEC, name=name, payload=payload, **kwargs))


# == definitions ==============================================================================================
def definition(*steps: dict[str, Any]) -> WorkflowDefinition:
    return validate_definition({"id": "approval", "name": "Approval", "version": "1", "steps": list(steps)},
                               "wf.yaml", actions={"echo"})


def problems(*steps: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        definition(*steps)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_wait_step_mistakes_are_reported_at_the_field() -> None:
    assert problems({"id": "go", "type": "signal"}) == [
        "steps[0].parameters: a signal step needs parameters.signal: the name of the signal it waits for"]
    assert problems({"id": "go", "type": "signal", "parameters": {"signal": "two words"}})[0].startswith(
        "steps[0].parameters.signal: signal 'two words' is not a valid signal name")
    assert "steps[0].parameters.signl: unknown field 'signl'; did you mean 'signal'?" in problems(
        {"id": "go", "type": "signal", "parameters": {"signl": "x"}})
    assert problems({"id": "ok", "type": "callback", "action": "echo"}) == [
        "steps[0].action: a callback step takes no action (it waits; nothing is invoked)"]
    assert problems({"id": "ok", "type": "callback", "timeoutSeconds": 60, "parameters": {"heartbeatSeconds": 60}}) \
        == ["steps[0].parameters: heartbeatSeconds (60) must be shorter than the step's timeoutSeconds (60)"]
    assert problems({"id": "ok", "type": "callback", "parameters": {"notfiy": True}}) == [
        "steps[0].parameters.notfiy: unknown field 'notfiy'; did you mean 'notify'?"]
    assert "callback, signal" in problems({"id": "ok", "type": "approval"})[0]


def test_callback_compiles_to_a_token_task_on_the_state_function_then_records_its_output() -> None:
    compiled = compile_workflow(definition(
        {"id": "review", "type": "callback", "timeoutSeconds": 3600, "retryPolicy": {"maxAttempts": 2},
         "parameters": {"heartbeatSeconds": 600, "details": {"role": "editor"}}},
        {"id": "go", "type": "signal", "dependencies": ["review"], "parameters": {"signal": "publish"}},
    ))
    states = compiled.asl["States"]["coafi.run"]["Branches"][0]["States"]
    review = states["review"]
    assert review["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    payload = review["Parameters"]["Payload"]
    assert review["Parameters"]["FunctionName"] == "${StateFunctionArn}"
    assert payload["op"] == "wait" and payload["taskToken.$"] == "$$.Task.Token"
    assert payload["stepType"] == "callback" and payload["notify"] is True and payload["details"] == {"role": "editor"}
    assert review["TimeoutSeconds"] == 3600 and review["HeartbeatSeconds"] == 600
    assert review["ResultSelector"] == {"output.$": "$"} and review["ResultPath"] == "$.steps.review"
    [retrier] = review["Retry"]  # the step's retryPolicy; its default errors cover Lambda's service errors
    assert "States.Timeout" in retrier["ErrorEquals"] and retrier["MaxAttempts"] == 1
    assert states["go"]["Retry"][0]["ErrorEquals"][0] == "Lambda.ServiceException"
    assert review["Next"] == "review.finished"
    finished = states["review.finished"]["Parameters"]["Payload"]
    assert finished["status"] == "SUCCEEDED" and finished["output.$"] == "$.steps.review.output"
    assert states["review.finished"]["Next"] == "go"
    go = states["go"]["Parameters"]["Payload"]
    assert go["signal"] == "publish" and go["stepType"] == "signal" and "notify" not in go
    assert "TimeoutSeconds" not in states["go"] and "HeartbeatSeconds" not in states["go"]
    assert states["go.finished"]["End"] is True


# == request models ==========================================================================================
def test_requests_say_which_task_and_stay_within_step_functions_limits() -> None:
    with pytest.raises(ValidationError, match="give either taskToken, or executionId and stepId, not both"):
        CompleteTaskRequest(taskToken="t", executionId=EXEC, stepId="a")
    with pytest.raises(ValidationError, match="which task\\? stepId is missing"):
        CompleteTaskRequest(executionId=EXEC)
    with pytest.raises(ValidationError, match="which task\\? taskToken, or executionId and stepId is missing"):
        FailTaskRequest(error="E")
    too_big = "x" * MAX_OUTPUT_BYTES
    with pytest.raises(ValidationError, match="result is 262,146 bytes of JSON; Step Functions takes at most"):
        CompleteTaskRequest(taskToken="t", result=too_big)
    with pytest.raises(ValidationError, match="payload is 262,146 bytes"):
        SignalRequest(executionId=EXEC, name="go", payload=too_big)
    assert SignalRequest(executionId=EXEC, name="go", payload="x" * (MAX_OUTPUT_BYTES - 2)).payload
    with pytest.raises(ValidationError, match="signal name 'a b' is not valid"):
        SignalRequest(executionId=EXEC, name="a b")
    with pytest.raises(ValidationError, match="at most 256 characters"):
        FailTaskRequest(taskToken="t", error="E" * 257)


# == signals: buffering, both orders, concurrency =============================================================
def test_a_signal_sent_before_the_wait_is_buffered_then_delivered_when_the_step_waits(
        waits: Waits, tokens: RecordingTokens) -> None:
    outcome = send(waits, {"go": True})
    assert (outcome.status, outcome.seq, outcome.deliveredTo) == ("BUFFERED", 0, None)
    assert tokens.succeeded == {}
    delivered = waits.begin_wait(start("publish", "tok-1"))
    assert [(d.seq, d.waiter.stepId) for d in delivered] == [(0, "publish")]
    assert tokens.succeeded == {"tok-1": {"go": True}}
    [signal] = waits.store.list_signals(EXEC)
    assert (signal["status"], signal["deliveredTo"], signal["payload"]) == ("DELIVERED", "publish", {"go": True})
    assert waits.store.get_channel(EXEC, "go").pending == []
    [record] = waits.state.list_steps(EXEC)
    assert (record.stepId, record.stepType, record.status) == ("publish", "signal", "RUNNING")


def test_a_signal_sent_while_the_step_waits_is_delivered_at_once(waits: Waits, tokens: RecordingTokens) -> None:
    assert waits.begin_wait(start("publish", "tok-1")) == []
    assert [w.stepId for w in waits.store.get_channel(EXEC, "go").waiters] == ["publish"]
    outcome = send(waits, 42)
    assert (outcome.status, outcome.deliveredTo) == ("DELIVERED", "publish")
    assert tokens.succeeded == {"tok-1": 42}
    assert waits.store.get_channel(EXEC, "go").waiters == []


def test_signals_of_one_name_queue_in_order_and_each_is_delivered_once(waits: Waits, tokens: RecordingTokens) -> None:
    for i in range(3):
        assert send(waits, f"#{i}").seq == i
    send(waits, "other name", name="stop")
    for i in range(3):
        waits.begin_wait(start(f"step{i}", f"tok-{i}"))
    assert tokens.succeeded == {"tok-0": "#0", "tok-1": "#1", "tok-2": "#2"}
    assert waits.store.get_channel(EXEC, "stop").pending == [0]  # a different name is a different queue
    waits.begin_wait(start("later", "tok-3"))
    assert "tok-3" not in tokens.succeeded  # nothing left for it: it waits
    assert send(waits, "#3").deliveredTo == "later"


def test_concurrent_signals_and_waits_in_any_interleaving_deliver_each_signal_exactly_once(
        waits: Waits, tokens: RecordingTokens) -> None:
    count = 16
    jobs: list[tuple[str, int]] = [("signal", i) for i in range(count)] + [("wait", i) for i in range(count)]
    random.Random(4).shuffle(jobs)
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(kind: str, i: int) -> None:
        try:
            barrier.wait()
            if kind == "signal":
                send(waits, {"n": i})
            else:
                waits.begin_wait(start(f"step{i}", f"tok-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(tokens.succeeded) == sorted(f"tok-{i}" for i in range(count))  # every waiter got one
    assert sorted(p["n"] for p in tokens.succeeded.values()) == list(range(count))  # every signal, once
    channel = waits.store.get_channel(EXEC, "go")
    assert (channel.pending, channel.waiters, channel.nextSeq) == ([], [], count)
    assert {s["status"] for s in waits.store.list_signals(EXEC)} == {"DELIVERED"}


def test_a_signal_for_a_step_that_stopped_waiting_goes_back_to_the_queue(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("publish", "tok-old"))
    tokens.dead.add("tok-old")  # the step timed out
    outcome = send(waits, "kept")
    assert outcome.status == "BUFFERED"
    channel = waits.store.get_channel(EXEC, "go")
    assert (channel.pending, channel.waiters) == ([0], [])
    waits.begin_wait(start("publish", "tok-retry"))  # the step's retry waits again
    assert tokens.succeeded == {"tok-retry": "kept"}


def test_a_retried_wait_replaces_the_steps_earlier_token(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("publish", "tok-1"))
    waits.begin_wait(start("publish", "tok-1"))  # the same invocation again: no second place in the queue
    waits.begin_wait(start("publish", "tok-2"))
    assert [w.taskToken for w in waits.store.get_channel(EXEC, "go").waiters] == ["tok-2"]
    send(waits, "x")
    assert tokens.succeeded == {"tok-2": "x"}


def test_a_resent_signal_id_is_accepted_once(waits: Waits, tokens: RecordingTokens) -> None:
    first = send(waits, "a", signalId="evt-1")
    again = send(waits, "a", signalId="evt-1")
    assert (first.status, again.status, again.seq) == ("BUFFERED", "DUPLICATE", 0)
    assert len(waits.store.list_signals(EXEC)) == 1


def test_signals_to_unknown_or_finished_executions_are_refused(waits: Waits, store: StateStore) -> None:
    with pytest.raises(UnknownExecution, match=r"no execution 'run-9' is recorded .*pass the execution ARN"):
        waits.signal_workflow(SignalRequest(executionId="run-9", name="go"))
    store.finish_execution(EXEC, "approval", "SUCCEEDED", output={})
    with pytest.raises(ExecutionFinished, match=f"execution '{EXEC}' already ended SUCCEEDED at .*; signal 'go' "
                                                "was not delivered"):
        send(waits, "late")
    assert waits.store.list_signals(EXEC) == []


# == callbacks: by step id and by token =========================================================================
def test_complete_by_execution_and_step_sends_the_stored_token_once(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    [record] = waits.list_waits(EXEC)
    assert (record.stepId, record.stepType, record.status, record.taskToken) == (
        "review", "callback", "WAITING", "tok-r")
    outcome = complete_task(execution_id=EXEC, step_id="review", result={"approved": True}, waits=waits)
    assert (outcome.status, outcome.via, outcome.stepId) == ("COMPLETED", "step", "review")
    assert tokens.succeeded == {"tok-r": {"approved": True}}
    assert waits.list_waits(EXEC)[0].status == "COMPLETED"
    with pytest.raises(NotWaiting, match=r"step 'review' of execution .* is not waiting: it was already completed"):
        complete_task(execution_id=EXEC, step_id="review", result={}, waits=waits)


def test_two_callers_completing_one_step_at_once_complete_it_once(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    results: list[str] = []
    barrier = threading.Barrier(6)

    def complete(i: int) -> None:
        barrier.wait()
        try:
            complete_task(execution_id=EXEC, step_id="review", result=i, waits=waits)
            results.append("ok")
        except NotWaiting:
            results.append("not waiting")

    threads = [threading.Thread(target=complete, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["not waiting"] * 5 + ["ok"]
    assert list(tokens.succeeded) == ["tok-r"]


def test_fail_by_step_and_by_token(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    outcome = fail_task(execution_id=EXEC, step_id="review", error="Rejected", cause="too short", waits=waits)
    assert (outcome.status, outcome.via) == ("FAILED", "step")
    assert tokens.failed == {"tok-r": ("Rejected", "too short")}
    assert fail_task("tok-x", error="E", waits=waits).via == "token"
    assert complete_task("tok-y", result=1, waits=waits).via == "token"
    assert tokens.failed["tok-x"] == ("E", "") and tokens.succeeded == {"tok-y": 1}
    with pytest.raises(TaskTokenNotActive, match="not active"):
        complete_task("tok-y", result=2, waits=waits)


def test_completing_what_does_not_wait_says_why(waits: Waits, tokens: RecordingTokens, store: StateStore) -> None:
    with pytest.raises(NotWaiting, match=r"step 'review' of execution .* has not started waiting"):
        complete_task(execution_id=EXEC, step_id="review", waits=waits)
    waits.begin_wait(start("publish", "tok-p"))
    with pytest.raises(NotWaiting, match=f"waits for signal 'go', not for completeTask: send it with `coafi signal "
                                         f"{EXEC} go --payload JSON`"):
        complete_task(execution_id=EXEC, step_id="publish", waits=waits)
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    tokens.dead.add("tok-r")  # timed out
    with pytest.raises(NotWaiting, match="stopped waiting before it was completed"):
        complete_task(execution_id=EXEC, step_id="review", waits=waits)
    assert {r.stepId: r.status for r in waits.list_waits(EXEC)}["review"] == "ENDED"
    store.finish_execution(EXEC, "approval", "FAILED", error={"type": "States.Timeout", "message": ""})
    with pytest.raises(ExecutionFinished, match="already ended FAILED"):
        complete_task(execution_id=EXEC, step_id="review", waits=waits)


def test_callback_with_notify_publishes_task_token_issued_on_the_bus(store: StateStore) -> None:
    from coafi.engine.waits import WaitEvents

    events = aws.client("events")
    events.create_event_bus(Name="app-bus")
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = json.dumps({"detail-type": ["TaskTokenIssued"]})
    events.put_rule(Name="tokens", EventBusName="app-bus", EventPattern=pattern)
    events.put_targets(Rule="tokens", EventBusName="app-bus", Targets=[{"Id": "q", "Arn": queue_arn}])
    waits = Waits(store, tokens=RecordingTokens(), events=WaitEvents("app-bus"))
    begin = start("review", "tok-r", kind="callback").model_copy(update={"notify": True, "details": {"role": "ed"}})
    waits.begin_wait(begin)
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert event["source"] == "coafi" and event["detail-type"] == "TaskTokenIssued"
    assert {k: event["detail"][k] for k in ("executionId", "stepId", "taskToken", "details")} == {
        "executionId": EXEC, "stepId": "review", "taskToken": "tok-r", "details": {"role": "ed"}}
    silent = Waits(store, tokens=RecordingTokens(), events=WaitEvents(None))
    with pytest.raises(Exception, match="no event bus is configured"):
        silent.begin_wait(begin)


# == EventBridge commands and the CLI ===========================================================================
def test_commands_map_detail_types_to_models_and_handlers(waits: Waits, tokens: RecordingTokens) -> None:
    assert set(WAIT_COMMANDS) == {"SignalWorkflow", "CompleteTask", "FailTask"}
    waits.begin_wait(start("publish", "tok-p"))
    model, handle = WAIT_COMMANDS["SignalWorkflow"]
    command = model.model_validate({"executionId": EXEC, "name": "go", "payload": [1], "signalId": "evt-7"})
    assert isinstance(command, SignalWorkflowCommand)
    assert handle(command, waits).status == "DELIVERED"
    assert handle(command, waits).status == "DUPLICATE"  # EventBridge delivered it twice
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    model, handle = WAIT_COMMANDS["CompleteTask"]
    assert handle(model.model_validate({"executionId": EXEC, "stepId": "review", "result": "ok"}), waits).status \
        == "COMPLETED"
    assert tokens.succeeded == {"tok-p": [1], "tok-r": "ok"}
    with pytest.raises(ValidationError):
        WAIT_COMMANDS["FailTask"][0].model_validate({"executionId": EXEC})


def test_cli_signal_and_task_complete(store: StateStore, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COAFI_TABLE_NAME", TABLE)
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(TaskTokens, "succeed", lambda self, token, output: sent.append((token, output)))
    Waits(store, tokens=RecordingTokens()).begin_wait(start("review", "tok-r", kind="callback"))
    assert main(["signal", EXEC, "go", "--payload", '{"a": 1}', "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "BUFFERED"
    assert main(["task", "complete", "--execution", EXEC, "--step", "review", "--result", "true"]) == 0
    assert "task completed: step review" in capsys.readouterr().out
    assert sent == [("tok-r", True)]
    assert main(["task", "complete", "--execution", EXEC, "--step", "review"]) == 1
    assert "is not waiting: it was already completed" in capsys.readouterr().err
    assert main(["task", "fail", "--step", "review", "--error", "E"]) == 1
    assert "which task? executionId is missing" in capsys.readouterr().err
    assert main(["signal", "run-unknown", "go"]) == 1
    assert "pass the execution ARN" in capsys.readouterr().err
    assert main(["task", "ls", EXEC]) == 0
    assert "review" in capsys.readouterr().out


def test_signal_workflow_module_function_uses_the_functions_environment(
        store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from coafi.config import function_settings

    monkeypatch.setenv("COAFI_TABLE_NAME", TABLE)
    function_settings.cache_clear()
    try:
        assert signal_workflow(EXEC, "go", {"x": 1}).status == "BUFFERED"
    finally:
        function_settings.cache_clear()


def test_a_completion_that_never_reached_step_functions_can_be_retried(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    tokens.unreachable.add("tok-r")
    with pytest.raises(ConnectionError):
        complete_task(execution_id=EXEC, step_id="review", result=1, waits=waits)
    assert waits.store.get_wait(EXEC, "review").status == "WAITING"  # type: ignore[union-attr]
    assert complete_task(execution_id=EXEC, step_id="review", result=2, waits=waits).status == "COMPLETED"
    assert tokens.succeeded == {"tok-r": 2}


def test_a_failure_that_never_reached_step_functions_can_be_retried(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    tokens.unreachable.add("tok-r")
    with pytest.raises(ConnectionError):
        fail_task(execution_id=EXEC, step_id="review", error="Rejected", waits=waits)
    assert waits.store.get_wait(EXEC, "review").status == "WAITING"  # type: ignore[union-attr]
    assert fail_task(execution_id=EXEC, step_id="review", error="Rejected", cause="2nd", waits=waits).via == "step"
    assert tokens.failed == {"tok-r": ("Rejected", "2nd")}
    assert waits.store.get_wait(EXEC, "review").status == "FAILED"  # type: ignore[union-attr]


def test_failing_a_step_that_stopped_waiting_says_so(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    tokens.dead.add("tok-r")  # timed out
    with pytest.raises(NotWaiting, match="stopped waiting before it was completed"):
        fail_task(execution_id=EXEC, step_id="review", error="Rejected", waits=waits)
    assert waits.store.get_wait(EXEC, "review").status == "ENDED"  # type: ignore[union-attr]
    assert tokens.failed == {}


def test_a_signal_that_never_reached_step_functions_stays_queued(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("publish", "tok-p"))
    tokens.unreachable.add("tok-p")
    with pytest.raises(ConnectionError):
        send(waits, "first try")
    channel = waits.store.get_channel(EXEC, "go")
    assert (channel.pending, [w.taskToken for w in channel.waiters]) == ([0], ["tok-p"])  # both kept
    assert [d.seq for d in waits.deliver(EXEC, "go")] == [0]  # e.g. the next signal's delivery
    assert tokens.succeeded == {"tok-p": "first try"}


def test_heartbeats_by_step_and_by_token(waits: Waits, tokens: RecordingTokens) -> None:
    waits.begin_wait(start("review", "tok-r", kind="callback"))
    assert heartbeat_task(execution_id=EXEC, step_id="review", waits=waits).status == "WAITING"
    assert heartbeat_task("tok-r", waits=waits).via == "token"
    assert tokens.beats == ["tok-r", "tok-r"]
    tokens.dead.add("tok-r")
    with pytest.raises(NotWaiting, match="stopped waiting"):
        heartbeat_task(execution_id=EXEC, step_id="review", waits=waits)
    with pytest.raises(NotWaiting, match=r"is not waiting \(ended\)"):
        heartbeat_task(execution_id=EXEC, step_id="review", waits=waits)


def test_cost_estimate_prices_the_wait_op(repo_root: Path, tmp_path: Path) -> None:
    from coafi.cost import estimate_file

    estimate = estimate_file(repo_root / "statemachines" / "content-approval.yaml", results_dir=tmp_path / "none")
    assert estimate.usage.invocations["state:wait"] == 2  # the callback and the signal step
    assert estimate.total > 0
