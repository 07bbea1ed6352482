"""In-process synths of the CDK app, once per test session each (a synth takes a few seconds).

- ``sample``: the repository itself (statemachines/, functions/), exactly what ``cdk synth`` deploys;
- ``focused``: a small project in a temp folder with the cases the sample does not have: an external Lambda
  ARN as an action, a sub-workflow whose file sorts after its parent, event (with ``detail``) and schedule
  triggers, ``logLevel: ALL``.

Both are checked with cdk-nag's AwsSolutionsChecks, as app.py does.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import cx_api
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from infra.config import CoafiConfig
from infra.stack import CoafiStack
from tests.infra.nested import flattened

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
EXTERNAL_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:partner-enrich"


@dataclass
class Synth:
    stack: CoafiStack
    #: The app's template with the workflows' nested stacks merged in (tests/infra/nested.py).
    template: Template
    template_file: Path
    #: The app's template file and each nested stack's.
    template_files: list[Path] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.to_json()["Resources"]  # type: ignore[no-any-return]

    def of_type(self, cfn_type: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def function_id(self, description: str) -> str:
        """Logical id of the Lambda function with this description."""
        matches = [k for k, v in self.of_type("AWS::Lambda::Function").items()
                   if v["Properties"].get("Description") == description]
        assert len(matches) == 1, f"{len(matches)} functions described {description!r}"
        return matches[0]

    def state_machine(self, name: str) -> tuple[str, dict[str, Any]]:
        matches = [(k, v) for k, v in self.of_type("AWS::StepFunctions::StateMachine").items()
                   if v["Properties"]["StateMachineName"] == name]
        assert len(matches) == 1, f"{len(matches)} state machines named {name!r}"
        return matches[0]

    def role_statements(self, role_logical_id: str) -> list[dict[str, Any]]:
        """Every statement of every AWS::IAM::Policy attached to the role."""
        statements: list[dict[str, Any]] = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
                statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return statements


def arn_text(value: Any) -> str:
    """A synthesized ARN as text, pseudo parameters and references as ``<name>``:
    ``arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:Coafi_*``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(arn_text(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    return json.dumps(value, sort_keys=True)


def resources_of(statement: dict[str, Any]) -> list[str]:
    """A statement's resources as ``arn_text``."""
    resources = statement.get("Resource", [])
    return sorted(arn_text(r) for r in (resources if isinstance(resources, list) else [resources]))


def synthesize(outdir: Path, **context: Any) -> Synth:
    app = cdk.App(context={**CDK_CONTEXT, **context}, outdir=str(outdir))
    config = CoafiConfig.from_context(app.node)
    stack = CoafiStack(app, config.stack_name, config=config)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return synth_of(stack, app.synth())


def synth_of(stack: CoafiStack, assembly: cx_api.CloudAssembly) -> Synth:
    artifact = assembly.get_stack_by_name(stack.stack_name)
    template_file = Path(assembly.directory) / artifact.template_file
    merged, nested_files = flattened(stack, Path(assembly.directory), json.loads(template_file.read_text()))
    return Synth(stack, Template.from_json(merged), template_file, [template_file, *nested_files])


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    if not (REPO_ROOT / "statemachines" / "content-generation.yaml").is_file():
        pytest.skip("statemachines/content-generation.yaml is not there yet")
    return synthesize(tmp_path_factory.mktemp("cdk-sample"))


HANDLER = 'def handler(event, context):\n    return {"ok": True}\n'

FOCUSED_DEFINITIONS = {
    # "a-" sorts before "b-": the parent's file comes first, the app must still build the child first.
    "a-parent.yaml": f"""
        id: parent
        name: Parent
        version: "1"
        triggers:
          - type: event
            source: [test.orders]
            detailType: [OrderPlaced]
            detail: {{region: [eu]}}
          - type: schedule
            cron: "0 9 * * ? *"
            timezone: Europe/Berlin
          - type: manual
        steps:
          - id: first
            action: echo
          - id: enrich
            action: {EXTERNAL_ARN}
            dependencies: [first]
          - id: runChild
            type: subworkflow
            action: child
            dependencies: [enrich]
    """,
    "b-child.yml": """
        id: child
        name: Child
        version: "1"
        logLevel: ALL
        triggers:
          - type: schedule
            rate: 5 minutes
        steps:
          - id: store
            action: store
    """,
    "notes.txt": "not a definition: ignored\n",
}


def write_project(root: Path, definitions: dict[str, str], actions: tuple[str, ...] = ("echo", "store", "unused")
                  ) -> Path:
    """A minimal project: functions/state, functions/actions/<name>, requirements, statemachines/."""
    (root / "functions" / "state").mkdir(parents=True)
    (root / "functions" / "state" / "handler.py").write_text(HANDLER)
    for name in actions:
        (root / "functions" / "actions" / name).mkdir(parents=True)
        (root / "functions" / "actions" / name / "handler.py").write_text(HANDLER)
    (root / "functions" / "actions" / "not-an-action").mkdir()  # no handler.py: not deployed
    # Same requirements as the repository: the layer build cache is shared.
    (root / "functions" / "requirements.txt").write_text((REPO_ROOT / "functions" / "requirements.txt").read_text())
    (root / "statemachines" / "nested").mkdir(parents=True)
    (root / "statemachines" / "nested" / "ignored.yaml").write_text("not: loaded (non-recursive)\n")
    for name, text in definitions.items():
        (root / "statemachines" / name).write_text(textwrap.dedent(text).lstrip())
    return root


def project_context(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "coafi:definitionsDir": str(root / "statemachines"),
        "coafi:functionsDir": str(root / "functions"),
        "coafi:buildDir": str(REPO_ROOT / ".coafi" / "build"),
        **extra,
    }


@pytest.fixture(scope="session")
def focused_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("focused-project"), FOCUSED_DEFINITIONS)


@pytest.fixture(scope="session")
def focused(focused_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(
        tmp_path_factory.mktemp("cdk-focused"),
        **project_context(focused_project, **{"coafi:stackName": "Focus", "coafi:retainData": "true"}),
    )


LARGE_WORKFLOWS = 99  # the most an app holds (infra/constructs/observability.py: 500 dashboard widgets)


@pytest.fixture(scope="session")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[CoafiStack, dict[str, Any]]:
    """99 generated workflows (bench/synth.py's) on the sample's six actions: the stack (synthesized, so every
    synth-time check ran) and the app's template."""
    import yaml

    from bench.synth import ACTIONS, workflow_definition

    definitions = {f"bench-{i:03d}.yaml": yaml.safe_dump(workflow_definition(i), sort_keys=False)
                   for i in range(LARGE_WORKFLOWS)}
    root = write_project(tmp_path_factory.mktemp("large-project"), definitions, actions=ACTIONS)
    app = cdk.App(context={**CDK_CONTEXT, **project_context(root)}, outdir=str(tmp_path_factory.mktemp("cdk-large")))
    config = CoafiConfig.from_context(app.node)
    stack = CoafiStack(app, config.stack_name, config=config)
    assembly = app.synth()  # runs every synth-time check (environments, IAM policy sizes)
    template = json.loads((Path(assembly.directory) / assembly.get_stack_by_name(stack.stack_name).template_file)
                          .read_text())
    return stack, template
