"""Compiled machines pass asl-validator (the Amazon States Language schema and its JSONPath and ARN checks),
with the ``${...}`` placeholders replaced by ARNs of the kind the CDK app substitutes."""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from coafi.compiler import CompiledWorkflow, compile_workflow
from coafi.definitions import load_definition, validate_definition
from tests.conftest import FIXTURE_PROJECT, REPO_ROOT
from tests.unit.test_compiler import random_dag, random_decision_workflow

VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"
LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:{}"

pytestmark = pytest.mark.skipif(
    not VALIDATOR.exists(),
    reason=f"{VALIDATOR} is missing: run `npm ci` at the repository root (CI always does)",
)


def with_arns(compiled: CompiledWorkflow) -> str:
    """The ASL text with every placeholder resolved the way the CDK app resolves it."""
    arns = {}
    for placeholder, ref in compiled.substitutions.items():
        if ref.kind == "workflow":
            arns[placeholder] = STATE_MACHINE_ARN.format(f"Coafi_{ref.name}")
        elif ref.kind == "action":
            arns[placeholder] = LAMBDA_ARN.format(f"Coafi_action-{ref.name}")
        else:
            arns[placeholder] = LAMBDA_ARN.format("Coafi-state")
    text = re.sub(r"\$\{([^}]+)\}", lambda m: arns[m.group(1)], compiled.to_json())
    assert "${" not in text
    return text


def run_validator(*paths: Path) -> subprocess.CompletedProcess[str]:
    args = [str(VALIDATOR)]
    for path in paths:
        args += ["--json-path", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def definition_files() -> list[Path]:
    files = sorted((REPO_ROOT / "statemachines").glob("*.yaml"))
    files += sorted((FIXTURE_PROJECT / "statemachines").glob("*.yaml"))
    return files


def load_and_compile(path: Path) -> CompiledWorkflow:
    return compile_workflow(load_definition(path))


def compile_data(data: dict[str, Any]) -> CompiledWorkflow:
    return compile_workflow(validate_definition(data, f"{data['id']}.yaml", actions=None))


def random_machine(seed: int, size: int, density: float) -> CompiledWorkflow:
    steps = random_dag(random.Random(seed), size, density)
    return compile_data({"id": f"random-{seed}", "name": "Random", "version": "1", "steps": steps})


def decision_heavy_machine() -> CompiledWorkflow:
    steps: list[dict[str, Any]] = random_decision_workflow(random.Random(3), 40)
    steps += [
        {"id": "waitFor", "type": "wait", "parameters": {"seconds": "$.input.delay"}},
        {"id": "waitUntil", "type": "wait", "parameters": {"until": "2026-12-01T09:00:00+02:00"}},
        {"id": "external", "action": LAMBDA_ARN.format("partner-scoring") + ":live",
         "retryPolicy": {"maxAttempts": 5, "retryOn": ["States.ALL"], "maxDelaySeconds": 20}, "timeoutSeconds": 30},
        {"id": "child", "type": "subworkflow", "action": "content-generation", "timeoutSeconds": 900},
    ]
    compiled = compile_data({"id": "decisions", "name": "Decisions", "version": "1", "steps": steps})
    assert sum(1 for s in compiled.definition.steps if s.type == "decision") >= 3
    return compiled


def wide_machine() -> CompiledWorkflow:
    steps: list[dict[str, Any]] = [{"id": f"w{i}", "action": "echo"} for i in range(20)]
    steps.append({"id": "after", "action": "echo", "dependencies": [f"w{i}" for i in range(20)]})
    return compile_data({"id": "wide", "name": "Wide", "version": "1", "steps": steps})


MACHINES: dict[str, Callable[[], CompiledWorkflow]] = {
    **{str(p.relative_to(REPO_ROOT)): partial(load_and_compile, p) for p in definition_files()},
    **{f"random-{seed}": partial(random_machine, seed, size, density)
       for seed, (size, density) in enumerate([(12, 0.2), (40, 0.05), (60, 0.02)])},
    "decision-heavy": decision_heavy_machine,
    "wide-parallel": wide_machine,
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, str]]:
    """Every machine written out and checked by one validator run (node starts in ~0.5 s; once is enough):
    name -> (valid, the validator's output)."""
    folder = tmp_path_factory.mktemp("asl")
    paths: dict[str, Path] = {}
    for i, (name, build) in enumerate(MACHINES.items()):
        paths[name] = folder / f"{i}.asl.json"
        paths[name].write_text(with_arns(build()), encoding="utf-8")
    result = run_validator(*paths.values())
    output = result.stdout + result.stderr
    verdicts = {name: (f'"{path}" is valid' in result.stdout, output) for name, path in paths.items()}
    assert (result.returncode == 0) == all(valid for valid, _ in verdicts.values()), output
    return verdicts


def test_the_validator_rejects_a_broken_machine(tmp_path: Path) -> None:
    """Guards against a validator run that accepts anything (wrong flag, wrong file)."""
    good, bad = tmp_path / "good.json", tmp_path / "broken.json"
    good.write_text(json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}))
    bad.write_text(json.dumps({"StartAt": "missing", "States": {"a": {"Type": "Pass", "Next": "nowhere"}}}))
    result = run_validator(good, bad)
    assert result.returncode != 0
    assert f'"{good}" is valid' in result.stdout and f'"{bad}" is valid' not in result.stdout
    assert "MISSING_TRANSITION_TARGET" in result.stdout + result.stderr


@pytest.mark.parametrize("name", list(MACHINES))
def test_compiled_machines_are_valid_asl(name: str, verdicts: dict[str, tuple[bool, str]]) -> None:
    valid, output = verdicts[name]
    assert valid, f"asl-validator rejected {name}:\n{output}"
