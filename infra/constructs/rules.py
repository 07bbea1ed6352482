"""The rule registry's functions and the deploy of ``statemachines/rules/`` (coafi/rules/README.md).

- **Rules function** (``functions/rules``, COAFI's own code): evaluates the rules of decisions; invoked by the
  state machines whose decisions use rules. It may only read the registry: ``GetItem``/``Query`` on the state
  table, for the ``RULES`` partition (``dynamodb:LeadingKeys``).
- **Rule files** (``<definitions dir>/rules/*.json|yaml``): validated at synth time (a malformed rule, or a
  decision naming a rule no file defines, fails the synth naming file and JSONPath), then one custom resource
  ``Custom::CoafiRuleFile`` per file, backed by the **rules-deploy function** (``functions/rules_deploy``),
  registers the file's rules on create/update and unregisters them when the file is deleted. That function may
  only read, write and delete items of the ``RULES`` partition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import CustomResource
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from coafi.definitions.errors import DefinitionError
from coafi.definitions.models import WorkflowDefinition
from coafi.rules.decisions import rule_reference_problems
from coafi.rules.deploy import RESOURCE_TYPE, rules_json
from coafi.rules.dynamo import RULE_LEADING_KEYS
from coafi.rules.files import load_rule_files, rules_dir
from infra.constructs.function import CoafiFunction, partition_statement

if TYPE_CHECKING:
    from infra.constructs.core import Core

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
RULES_CODE_DIR = FUNCTIONS_DIR / "rules"
RULES_DEPLOY_CODE_DIR = FUNCTIONS_DIR / "rules_deploy"
RULES_FUNCTION_LABEL = "coafi-rules"
RULES_DEPLOY_LABEL = "coafi-rules-deploy"
#: What evaluating needs (get a rule by id; list a category) and what the deploy needs (write, delete).
READ_ACTIONS = ["dynamodb:GetItem", "dynamodb:Query"]
DEPLOY_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]


def _registry_statement(table: dynamodb.ITableV2, actions: list[str]) -> iam.PolicyStatement:
    return partition_statement(table, actions, list(RULE_LEADING_KEYS))  # the registry is read by key only


class RulesFunction(CoafiFunction):
    """Reads the registry only."""

    def _grant_state_table(self, table: dynamodb.ITableV2) -> None:
        self.function.add_to_role_policy(_registry_statement(table, READ_ACTIONS))


class RulesDeployFunction(CoafiFunction):
    """Writes and deletes registry items only."""

    def _grant_state_table(self, table: dynamodb.ITableV2) -> None:
        self.function.add_to_role_policy(_registry_statement(table, DEPLOY_ACTIONS))


def build_rules_function(core: Core) -> RulesFunction:
    """The rules function of the app (in the core: every workflow whose decisions use rules invokes it)."""
    return RulesFunction(
        core,
        "RulesFunction",
        code_dir=RULES_CODE_DIR,
        description=f"COAFI rules function of {core.config.stack_name}: evaluates the rules of decisions",
        layer=core.layer,
        table=core.table,
        environment=core.function_environment(RULES_FUNCTION_LABEL, event_bus=False),
        removal_policy=core.removal_policy,
    )


def rules_functions(core: Core, rule_files: RuleFiles, actions: Mapping[str, object]) -> dict[str, lambda_.Function]:
    """The rules functions by alarm label (``coafi-rules``, ``coafi-rules-deploy``), for the app's alarms; an
    action folder with such a name is refused (its alarms would collide)."""
    functions: dict[str, lambda_.Function] = {RULES_FUNCTION_LABEL: core.rules_function.function}
    if rule_files.function is not None:
        functions[RULES_DEPLOY_LABEL] = rule_files.function.function
    for label in (RULES_FUNCTION_LABEL, RULES_DEPLOY_LABEL):
        if label in actions:
            raise ValueError(f"functions/actions/{label}: that name is reserved for COAFI's rules functions")
    return functions


def _resource_id(file: Path) -> str:
    return "File" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", file.name) if part)


class RuleFiles(Construct):
    """One ``Custom::CoafiRuleFile`` per rule file, and the function behind them (only when there are files)."""

    def __init__(self, scope: Construct, construct_id: str, *, core: Core, definitions_dir: Path,
                 workflows: Iterable[tuple[Path, WorkflowDefinition]]) -> None:
        super().__init__(scope, construct_id)
        folder = rules_dir(definitions_dir)
        files, problems = load_rule_files(folder)
        problems.extend(rule_reference_problems(list(workflows), files, folder))
        if problems:
            raise DefinitionError(problems)
        self.files = files
        self.resources: dict[str, CustomResource] = {}
        self.function: RulesDeployFunction | None = None
        if not files:
            return
        self.function = RulesDeployFunction(
            self,
            "DeployFunction",
            code_dir=RULES_DEPLOY_CODE_DIR,
            description=f"COAFI rules deploy of {core.config.stack_name}: loads rule files into the registry",
            layer=core.layer,
            table=core.table,
            environment=core.function_environment(RULES_DEPLOY_LABEL, event_bus=False),
            removal_policy=core.removal_policy,
        )
        for loaded in files:
            self.resources[loaded.file.name] = CustomResource(
                self,
                _resource_id(loaded.file),
                service_token=self.function.function.function_arn,
                resource_type=RESOURCE_TYPE,
                properties={"File": loaded.file.name, "RulesJson": rules_json(loaded.rules)},
            )
