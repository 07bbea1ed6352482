"""One Lambda function per action folder (``functions/actions/<name>/handler.py``), named
``<stack>-action-<name>`` (``coafi.naming.action_function_name``: at most 64 characters, letters, digits, ``-``
and ``_``; anything else fails the synth naming the folder)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from coafi import naming
from infra.constructs.core import Core
from infra.constructs.function import CoafiFunction


class Actions(Construct):
    """The action functions, by action name. Each may read/write the state table and put events on the bus."""

    def __init__(self, scope: Construct, construct_id: str, *, core: Core, folders: Mapping[str, Path]) -> None:
        super().__init__(scope, construct_id)
        self.core = core
        self.functions: dict[str, CoafiFunction] = {
            name: self._build_action(name, folder) for name, folder in sorted(folders.items())
        }

    def _build_action(self, name: str, folder: Path) -> CoafiFunction:
        try:
            function_name = naming.action_function_name(self.core.config.stack_name, name)
        except ValueError as exc:
            raise ValueError(f"{folder}: {exc}") from None
        action = CoafiFunction(
            self,
            name,
            code_dir=folder,
            # fixed, so the dispatcher derives it from the action's name (coafi.naming, no map in its environment)
            function_name=function_name,
            description=f"COAFI action {name}",
            layer=self.core.layer,
            table=self.core.table,
            environment=self.core.function_environment(name, event_bus=True),
            removal_policy=self.core.removal_policy,
        )
        self.core.grant_state_access(action)  # its output may be a payload too large for the table
        self._grant_events(action)
        return action

    def _grant_events(self, action: CoafiFunction) -> None:
        # Actions may tell the world about their results (e.g. notify-content-generated); only this bus.
        self.core.event_bus.grant_put_events_to(action.function)

    def function(self, name: str) -> lambda_.IFunction:
        try:
            return self.functions[name].function
        except KeyError:
            known = ", ".join(sorted(self.functions)) or "none"
            raise KeyError(f"no action function '{name}' (actions found: {known})") from None
