"""Compile a workflow definition to Amazon States Language.

The generated machine (see docs/ARCHITECTURE.md for the data it carries):

    coafi.start -> coafi.run [the workflow's steps] -> coafi.succeeded
                        \\-- any error --> coafi.failed -> coafi.fail

Each task step's state is named by its step id. ARNs appear as ``${Placeholder}`` definition substitutions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from coafi.compiler.layout import Leaf, Node, Par, Region, Seq, lay_out
from coafi.definitions.branches import DecisionLayout, analyse_decisions, branch_labels
from coafi.definitions.models import (
    AllCondition,
    AnyCondition,
    Condition,
    FactCondition,
    NotCondition,
    RetryPolicy,
    WorkflowDefinition,
    WorkflowStep,
)
from coafi.resilience.compile import continue_states, escalation_context, policy_retriers

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
STATE_FUNCTION = "StateFunctionArn"
#: Step Functions rejects state machine definitions larger than 1 MiB.
MAX_DEFINITION_BYTES = 1_048_576
MERGE_PER_PASS = 8  # Step Functions nests at most 10 intrinsic functions in one field
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
START_EXECUTION_SYNC = "arn:aws:states:::states:startExecution.sync:2"


@dataclass(frozen=True)
class ArnRef:
    """What a ``${Placeholder}`` in the ASL stands for; the CDK app resolves it to an ARN."""

    kind: Literal["action", "state-function", "workflow"]
    name: str = ""


@dataclass
class CompiledWorkflow:
    definition: WorkflowDefinition
    asl: dict[str, Any]
    layout: Node
    substitutions: dict[str, ArnRef] = field(default_factory=dict)
    external_functions: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    subworkflows: list[str] = field(default_factory=list)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.asl, indent=indent)


def placeholder_for_action(name: str) -> str:
    return "Action_" + re.sub(r"[^A-Za-z0-9]", "_", name)


def placeholder_for_workflow(workflow_id: str) -> str:
    return "Workflow_" + re.sub(r"[^A-Za-z0-9]", "_", workflow_id)


@dataclass
class _Fragment:
    states: dict[str, dict[str, Any]]
    start: str
    ends: list[str]


class DefinitionTooLarge(ValueError):
    """The compiled machine would exceed Step Functions' definition size limit."""


def compile_workflow(definition: WorkflowDefinition, *, enforce_size_limit: bool = True) -> CompiledWorkflow:
    """Compile a validated definition. Raises DefinitionTooLarge when the machine would exceed 1 MiB
    (``enforce_size_limit=False`` skips that check, for benchmarks of definitions larger than AWS allows)."""
    compiled = _Compiler(definition).compile()
    if not enforce_size_limit:
        return compiled
    size = len(json.dumps(compiled.asl, separators=(",", ":")).encode())
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionTooLarge(
            f"workflow '{definition.id}' compiles to {size:,} bytes of ASL with {len(definition.steps)} steps; "
            f"Step Functions accepts at most {MAX_DEFINITION_BYTES:,}. Split it into sub-workflows "
            "(type: subworkflow), each well under ~1,000 steps."
        )
    return compiled


class _Compiler:
    def __init__(self, definition: WorkflowDefinition) -> None:
        self.wf = definition
        self.steps = {s.id: s for s in definition.steps}
        self.deps = {s.id: list(dict.fromkeys(s.dependencies)) for s in definition.steps}
        self.parallel_count = 0
        self.result = CompiledWorkflow(definition, {}, Leaf(definition.steps[0].id))
        self.decisions: dict[str, DecisionLayout] = {}

    # -- top level -------------------------------------------------------------------------------
    def compile(self) -> CompiledWorkflow:
        self.decisions, issues = analyse_decisions(self.wf.steps, self.deps)
        if issues:  # the loader reports these with file names; reaching here means it was skipped
            raise ValueError("; ".join(f"step '{i.step}': {i.path}: {i.message}" for i in issues))
        layout = lay_out([s.id for s in self.wf.steps], self.deps, self.decisions)
        body = self.node(layout)
        self.result.layout = layout
        self.result.substitutions.setdefault(STATE_FUNCTION, ArnRef("state-function"))
        states: dict[str, dict[str, Any]] = {}
        states["coafi.start"] = self.state_call(
            {
                "op": "start",
                "executionId.$": "$$.Execution.Id",
                "workflowId": self.wf.id,
                "workflowVersion": self.wf.version,
                "startTime.$": "$$.Execution.StartTime",
                "input.$": "$",
            },
            result_selector={"input.$": "$.Payload.input", "steps.$": "$.Payload.steps"},
            result_path="$",
        ) | {"Comment": "Normalise the input and record the execution start", "Next": "coafi.run"}
        states["coafi.run"] = {
            "Type": "Parallel",
            "Comment": f"The steps of {self.wf.id}; any failure is recorded by coafi.failed",
            "Branches": [self.close(body)],
            # No ResultSelector: `$[*].x` over a one-branch result is a list on AWS but the bare object on
            # LocalStack. The finish operation takes the branch's final state from the one-item array.
            "ResultPath": "$.run",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "coafi.failed"}],
            "Next": "coafi.succeeded",
        }
        states["coafi.succeeded"] = self.state_call(
            {
                "op": "finish",
                "status": "SUCCEEDED",
                "executionId.$": "$$.Execution.Id",
                "workflowId": self.wf.id,
                "result.$": "States.ArrayGetItem($.run, 0)",
            },
            result_selector={"input.$": "$.Payload.input", "steps.$": "$.Payload.steps"},
            result_path="$",
        ) | {"End": True}
        states["coafi.failed"] = self.state_call(
            {
                "op": "finish",
                "status": "FAILED",
                "executionId.$": "$$.Execution.Id",
                "workflowId": self.wf.id,
                "input.$": "$.input",
                "error.$": "$.error",
            },
            result_path=None,
        ) | {"Next": "coafi.fail"}
        # Fail re-raises the step's own error. Names in the reserved "States." namespace cannot be
        # re-raised by a Fail state, so those fail as WorkflowFailed with the original name in the cause.
        states["coafi.fail"] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.error.Error", "StringMatches": "States.*", "Next": "coafi.fail.states"}],
            "Default": "coafi.fail.error",
        }
        states["coafi.fail.error"] = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
        states["coafi.fail.states"] = {
            "Type": "Fail",
            "Error": "WorkflowFailed",
            "CausePath": "States.Format('{}: {}', $.error.Error, $.error.Cause)",
        }
        self.result.asl = {
            "Comment": f"{self.wf.name} ({self.wf.id} v{self.wf.version}), compiled by coafi",
            "StartAt": "coafi.start",
            "States": states,
        }
        self.result.actions = sorted(set(self.result.actions))
        self.result.external_functions = sorted(set(self.result.external_functions))
        self.result.subworkflows = sorted(set(self.result.subworkflows))
        return self.result

    # -- layout nodes ----------------------------------------------------------------------------
    def node(self, node: Node) -> _Fragment:
        if isinstance(node, Leaf):
            return self.step(self.steps[node.step])
        if isinstance(node, Seq):
            fragments = [self.node(p) for p in node.parts]
            return self.chain(fragments)
        if isinstance(node, Par):
            return self.parallel(node)
        return self.region(node)

    def chain(self, fragments: list[_Fragment]) -> _Fragment:
        first = fragments[0]
        states = dict(first.states)
        ends = first.ends
        for fragment in fragments[1:]:
            for end in ends:
                states[end]["Next"] = fragment.start
            states.update(fragment.states)
            ends = fragment.ends
        return _Fragment(states, first.start, ends)

    @staticmethod
    def close(fragment: _Fragment) -> dict[str, Any]:
        for end in fragment.ends:
            fragment.states[end]["End"] = True
        return {"StartAt": fragment.start, "States": fragment.states}

    def parallel(self, node: Par) -> _Fragment:
        self.parallel_count += 1
        name = f"parallel.{self.parallel_count}"
        branches = [self.close(self.node(b)) for b in node.branches]
        states: dict[str, dict[str, Any]] = {
            name: {
                "Type": "Parallel",
                "Branches": branches,
                "ResultSelector": {"branches.$": "$[*].steps"},
                "ResultPath": "$.fork",
            }
        }
        items = [f"States.ArrayGetItem($.fork.branches, {i})" for i in range(len(branches))]
        chunks: list[list[str]] = []
        first = items[:MERGE_PER_PASS]
        chunks.append(first)
        rest = items[MERGE_PER_PASS:]
        while rest:
            chunks.append(["$.steps", *rest[: MERGE_PER_PASS - 1]])
            rest = rest[MERGE_PER_PASS - 1 :]
        previous = name
        for i, chunk in enumerate(chunks):
            join = f"{name}.join" if i == 0 else f"{name}.join-{i + 1}"
            merged = chunk[0]
            for item in chunk[1:]:
                merged = f"States.JsonMerge({merged}, {item}, false)"
            params: dict[str, Any] = {"input.$": "$.input", "steps.$": merged}
            if i < len(chunks) - 1:
                params["fork.$"] = "$.fork"
            states[join] = {"Type": "Pass", "Parameters": params}
            states[previous]["Next"] = join
            previous = join
        return _Fragment(states, name, [previous])

    def region(self, node: Region) -> _Fragment:
        step = self.steps[node.decision]
        layout = self.decisions[step.id]
        labels = branch_labels(step)
        states: dict[str, dict[str, Any]] = {}
        ends: list[str] = []
        record_names = [f"{step.id}.{label}" for label, _ in labels]
        for index, ((label, targets), branch_node) in enumerate(zip(labels, node.branches, strict=True)):
            skipped = [
                s.id for s in self.wf.steps
                if any(s.id in b.members for j, b in enumerate(layout.branches) if j != index)
            ]
            record = record_names[index]
            states[record] = self.state_call(
                {
                    "op": "decide",
                    "executionId.$": "$$.Execution.Id",
                    "workflowId": self.wf.id,
                    "stepId": step.id,
                    "stepName": step.name,
                    "branch": label,
                    "next": list(targets),
                    "skipped": [{"stepId": s, "stepName": self.steps[s].name,
                                 "stepType": self.steps[s].type} for s in skipped],
                },
                result_selector={"output.$": "$.Payload"},
                result_path=f"$.steps.{step.id}",
            ) | {"Comment": f"{step.id} took {label}; records the steps of the other branches as SKIPPED"}
            if branch_node is None:
                ends.append(record)
                continue
            fragment = self.node(branch_node)
            states[record]["Next"] = fragment.start
            states.update(fragment.states)
            ends.extend(fragment.ends)
        params = step.decision
        states[step.id] = {
            "Type": "Choice",
            "Comment": step.name,
            "Choices": [
                self.choice_rule(choice.condition) | {"Next": record_names[i]}
                for i, choice in enumerate(params.choices)
            ],
            "Default": record_names[-1],
        }
        return _Fragment(states, step.id, ends)

    # -- steps -----------------------------------------------------------------------------------
    def step(self, step: WorkflowStep) -> _Fragment:
        if step.type == "task" and not step.is_external:
            self.result.actions.append(step.action)
            placeholder = placeholder_for_action(step.action)
            self.result.substitutions[placeholder] = ArnRef("action", step.action)
            invoke = self.invoke(step, "${" + placeholder + "}")
            caught = continue_states(self.wf, step, invoke)  # error policies' `continue`: Catch -> <id>.continue
            return _Fragment({step.id: invoke, **caught}, step.id, [step.id, *caught])
        if step.type == "task":
            self.result.external_functions.append(step.action)
            return self.recorded(step, self.invoke(step, step.action))
        if step.type == "subworkflow":
            self.result.subworkflows.append(step.action)
            placeholder = placeholder_for_workflow(step.action)
            self.result.substitutions[placeholder] = ArnRef("workflow", step.action)
            state: dict[str, Any] = {
                "Type": "Task",
                "Resource": START_EXECUTION_SYNC,
                "Parameters": {
                    "StateMachineArn": "${" + placeholder + "}",
                    "Input": {
                        "input.$": "$.input",
                        "parameters": step.parameters,
                        "parent": {"executionId.$": "$$.Execution.Id", "workflowId": self.wf.id,
                                   "stepId": step.id},
                        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
                    },
                },
                "ResultSelector": {"output.$": "$.Output", "executionArn.$": "$.ExecutionArn"},
                "ResultPath": f"$.steps.{step.id}",
            }
            state.update(self.retry_and_timeout(step, service_errors=["StepFunctions.ExecutionLimitExceeded"]))
            return self.recorded(step, state)
        wait = step.wait
        state = {"Type": "Wait", "Comment": step.name}
        if isinstance(wait.seconds, int):
            state["Seconds"] = wait.seconds
        elif isinstance(wait.seconds, str):
            state["SecondsPath"] = wait.seconds
        elif wait.until is not None and wait.until.startswith("$."):
            state["TimestampPath"] = wait.until
        else:
            state["Timestamp"] = wait.until
        return self.recorded(step, state)

    def invoke(self, step: WorkflowStep, function: str) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": step.name,
            "Resource": LAMBDA_INVOKE,
            "Parameters": {
                "FunctionName": function,
                "Payload": {
                    "context": {
                        "executionId.$": "$$.Execution.Id",
                        "workflowId": self.wf.id,
                        "workflowVersion": self.wf.version,
                        "stepId": step.id,
                        "stepName": step.name,
                        "action": step.action,
                        "attempt.$": "$$.State.RetryCount",
                        "enteredAt.$": "$$.State.EnteredTime",
                    },
                    "parameters": step.parameters,
                    "input.$": "$.input",
                    "steps.$": "$.steps",
                },
            },
            "ResultSelector": {"output.$": "$.Payload"},
            "ResultPath": f"$.steps.{step.id}",
        }
        state["Parameters"]["Payload"]["context"].update(escalation_context(self.wf, step))
        state.update(self.retry_and_timeout(step, service_errors=LAMBDA_SERVICE_ERRORS))
        return state

    def recorded(self, step: WorkflowStep, state: dict[str, Any]) -> _Fragment:
        """Steps that run no coafi code (external Lambdas, waits, sub-workflows) are recorded around:
        RUNNING before, SUCCEEDED after. If the step fails, the workflow's failure handler (coafi.failed)
        marks every step still RUNNING as FAILED with the error."""
        base = {
            "op": "step",
            "executionId.$": "$$.Execution.Id",
            "workflowId": self.wf.id,
            "stepId": step.id,
            "stepName": step.name,
            "stepType": step.type,
            "action": step.action,
        }
        started, finished = f"{step.id}.started", f"{step.id}.finished"
        states = {
            started: self.state_call(base | {"status": "RUNNING"}, result_path=None) | {"Next": step.id},
            step.id: state | {"Next": finished},
            finished: self.state_call(
                base | {"status": "SUCCEEDED"}
                | ({"output.$": f"$.steps.{step.id}.output"} if step.type != "wait" else {}),
                result_path=None,
            ),
        }
        return _Fragment(states, started, [finished])

    def retry_and_timeout(self, step: WorkflowStep, *, service_errors: list[str]) -> dict[str, Any]:
        retriers: list[dict[str, Any]] = []
        policy = step.retryPolicy
        user = self.retrier(policy) if policy is not None and policy.maxAttempts > 1 else None
        covered = set(user["ErrorEquals"]) if user else set()
        defaults = [e for e in service_errors if e not in covered]
        if defaults and "States.ALL" not in covered:
            retriers.append({"ErrorEquals": defaults, "IntervalSeconds": 1, "MaxAttempts": 3,
                             "BackoffRate": 2.0, "JitterStrategy": "FULL"})
        if user:
            retriers.append(user)
        retriers = policy_retriers(self.wf, step, retriers)  # the step's error policies (coafi.resilience)
        out: dict[str, Any] = {"Retry": retriers} if retriers else {}
        if step.timeoutSeconds is not None:
            out["TimeoutSeconds"] = step.timeoutSeconds
        return out

    @staticmethod
    def retrier(policy: RetryPolicy) -> dict[str, Any]:
        retrier: dict[str, Any] = {
            "ErrorEquals": policy.error_names,
            "IntervalSeconds": policy.intervalSeconds,
            "MaxAttempts": policy.maxAttempts - 1,
            "BackoffRate": float(policy.backoffRate),
            "JitterStrategy": "FULL" if policy.jitter == "full" else "NONE",
        }
        if policy.maxDelaySeconds is not None:
            retrier["MaxDelaySeconds"] = policy.maxDelaySeconds
        return retrier

    def state_call(
        self,
        payload: dict[str, Any],
        *,
        result_path: str | None,
        result_selector: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": "${" + STATE_FUNCTION + "}", "Payload": payload},
            "Retry": [{"ErrorEquals": LAMBDA_SERVICE_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
                       "BackoffRate": 2.0, "JitterStrategy": "FULL"}],
            "ResultPath": result_path,
        }
        if result_selector is not None:
            state["ResultSelector"] = result_selector
        return state

    # -- decisions -------------------------------------------------------------------------------
    def choice_rule(self, condition: Condition) -> dict[str, Any]:
        if isinstance(condition, AllCondition):
            rules = [self.choice_rule(c) for c in condition.all]
            return rules[0] if len(rules) == 1 else {"And": rules}
        if isinstance(condition, AnyCondition):
            rules = [self.choice_rule(c) for c in condition.any]
            return rules[0] if len(rules) == 1 else {"Or": rules}
        if isinstance(condition, NotCondition):
            return {"Not": self.choice_rule(condition.not_)}
        return self.fact_rule(condition)

    @staticmethod
    def fact_rule(condition: FactCondition) -> dict[str, Any]:
        variable = f"$.{condition.fact}{condition.path[1:]}"
        present = {"Variable": variable, "IsPresent": True}
        value = condition.value
        if condition.operator in ("equal", "notEqual"):
            if value is None:
                test = {"Variable": variable, "IsNull": True}
            elif isinstance(value, bool):
                test = {"And": [{"Variable": variable, "IsBoolean": True},
                                {"Variable": variable, "BooleanEquals": value}]}
            elif isinstance(value, int | float):
                test = {"And": [{"Variable": variable, "IsNumeric": True},
                                {"Variable": variable, "NumericEquals": value}]}
            else:
                test = {"And": [{"Variable": variable, "IsString": True},
                                {"Variable": variable, "StringEquals": value}]}
            equal = {"And": [present, test]}
            return equal if condition.operator == "equal" else {"Not": equal}
        operator = {
            "lessThan": "NumericLessThan",
            "lessThanInclusive": "NumericLessThanEquals",
            "greaterThan": "NumericGreaterThan",
            "greaterThanInclusive": "NumericGreaterThanEquals",
        }[condition.operator]
        return {"And": [present, {"Variable": variable, "IsNumeric": True}, {"Variable": variable, operator: value}]}
