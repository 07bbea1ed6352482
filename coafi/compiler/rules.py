"""The states of a decision whose choices use rules (coafi/rules/README.md, "Decisions with rules").

    <decision>.rules (Task: the rules function evaluates every rule-driven choice's rule against input and steps;
                      ResultSelector {"rules.$": "$.Payload"}, ResultPath $.steps.<decision>)
      -> <decision> (Choice: a rule-driven choice n tests $.steps.<decision>.rules.satisfied.c<n>; native
                     conditions are compiled as before; first match wins, in definition order)
      -> <decision>.<branch> (op decide, as for every decision; records the rules' results in its output and the
                              other branches' steps as SKIPPED)
"""

from __future__ import annotations

import json
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
RULES_FUNCTION = "RulesFunctionArn"
RULES_STATE_SUFFIX = ".rules"
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


def choice_key(index: int) -> str:
    """The key of choice ``index`` (0-based) in the rules function's request and result."""
    return f"c{index + 1}"


def rule_choice(decision_id: str, index: int) -> dict[str, Any]:
    """The Choice rule of a rule-driven choice: its rule was satisfied."""
    return {"Variable": f"$.steps.{decision_id}.rules.satisfied.{choice_key(index)}", "BooleanEquals": True}


def rule_refs(choices: list[Any]) -> list[dict[str, Any]]:
    """The rules function's ``rules``: a registry id, or an inline rule as JSON text (no key of a rule may be
    read by Step Functions as a path, which any key ending in '.$' would be)."""
    refs: list[dict[str, Any]] = []
    for i, choice in enumerate(choices):
        if choice.rule is None:
            continue
        if isinstance(choice.rule, str):
            refs.append({"key": choice_key(i), "ruleId": choice.rule})
        else:
            refs.append({"key": choice_key(i), "ruleJson": json.dumps(choice.rule, separators=(",", ":"))})
    return refs


def rule_text(rule: Any) -> str:
    """A short human form of a choice's rule (diagram labels): ``rule <id>`` or ``rule <name>``/``inline rule``."""
    if isinstance(rule, str):
        return f"rule {rule}"
    name = rule.get("name") if isinstance(rule, dict) else None
    return f"rule {name}" if isinstance(name, str) and name else "inline rule"


def rules_step_text(rules: list[Any], category: str | None) -> str:
    """A short human form of a rules step (diagram detail): ``rules a, b + category c``."""
    names = [rule if isinstance(rule, str) else (rule.get("name") or "inline") for rule in rules]
    text = "rules " + ", ".join(str(n) for n in names) if names else "rules"
    return f"{text} + category {category}" if category and names else (
        f"rules of category {category}" if category else text)


def rules_step_state(compiler: Any, step: Any) -> dict[str, Any]:
    """The Task of a ``type: rules`` step: the rules function evaluates its rules (keys ``r<n>``) and the enabled
    rules of its category; the result is the step's output (``$.steps.<id>.output``)."""
    from coafi.compiler.asl import ArnRef

    compiler.result.substitutions.setdefault(RULES_FUNCTION, ArnRef("rules-function"))
    params = step.rules
    refs: list[dict[str, Any]] = []
    for i, rule in enumerate(params.rules):
        key = f"r{i + 1}"
        refs.append({"key": key, "ruleId": rule} if isinstance(rule, str)
                    else {"key": key, "ruleJson": json.dumps(rule, separators=(",", ":"))})
    payload: dict[str, Any] = {
        "context": {"executionId.$": "$$.Execution.Id", "workflowId": compiler.wf.id,
                    "workflowVersion": compiler.wf.version, "stepId": step.id},
        "rules": refs,
        "input.$": "$.input",
        "steps.$": "$.steps",
    }
    if params.category is not None:
        payload["category"] = params.category
    return {
        "Type": "Task",
        "Comment": step.name,
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": "${" + RULES_FUNCTION + "}", "Payload": payload},
        "ResultSelector": {"output.$": "$.Payload"},
        "ResultPath": f"$.steps.{step.id}",
    }


def add_rule_states(compiler: Any, step: Any, states: dict[str, dict[str, Any]], record_names: list[str]) -> str:
    """Add ``<decision>.rules`` before the decision's Choice; pass the rules' results to each branch's decide
    record. Returns the fragment's new first state."""
    from coafi.compiler.asl import ArnRef

    compiler.result.substitutions.setdefault(RULES_FUNCTION, ArnRef("rules-function"))
    name: str = step.id + RULES_STATE_SUFFIX
    wf = compiler.wf
    states[name] = {
        "Type": "Task",
        "Comment": f"{step.name}: evaluate the rules of its choices",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {
            "FunctionName": "${" + RULES_FUNCTION + "}",
            "Payload": {
                "context": {
                    "executionId.$": "$$.Execution.Id",
                    "workflowId": wf.id,
                    "workflowVersion": wf.version,
                    "stepId": step.id,
                },
                "rules": rule_refs(step.decision.choices),
                "input.$": "$.input",
                "steps.$": "$.steps",
            },
        },
        "ResultSelector": {"rules.$": "$.Payload"},
        "ResultPath": f"$.steps.{step.id}",
        "Retry": [{"ErrorEquals": LAMBDA_SERVICE_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
                   "BackoffRate": 2.0, "JitterStrategy": "FULL"}],
        "Next": step.id,
    }
    for record in record_names:
        states[record]["Parameters"]["Payload"]["rules.$"] = f"$.steps.{step.id}.rules"
    return name
