"""The app's settings, read once from CDK context (cdk.json or ``-c key=value``).

Every key is optional; the defaults deploy the sample app from the repository root.

| context key | default | meaning |
|---|---|---|
| ``coafi:stackName`` | ``Coafi`` | stack name; prefixes the bus, schedule group and state machine names |
| ``coafi:retainData`` | ``false`` | keep the state table and log groups when the stack is deleted |
| ``coafi:definitionsDir`` | ``statemachines`` | workflow definition files (non-recursive) |
| ``coafi:functionsDir`` | ``functions`` | ``state/`` (core function), ``actions/<name>/``, ``requirements.txt`` |
| ``coafi:buildDir`` | ``.coafi/build`` | where the shared layer is built (cached) |
| ``coafi:functionLogLevel`` | ``INFO`` | ``POWERTOOLS_LOG_LEVEL`` of every function |
| ``coafi:metricsNamespace`` | ``Coafi`` | ``POWERTOOLS_METRICS_NAMESPACE`` |
| ``coafi:recordRetentionDays`` | ``30`` | ``COAFI_RETENTION_DAYS``: state records expire (TTL) after this |

Relative paths are resolved against the project root (the folder holding ``infra/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Node

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACK_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A context value the app cannot use; the message names the key."""


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"context {key}={value!r}: expected true or false")


def _path(root: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


@dataclass(frozen=True)
class CoafiConfig:
    stack_name: str = "Coafi"
    retain_data: bool = False
    definitions_dir: Path = PROJECT_ROOT / "statemachines"
    functions_dir: Path = PROJECT_ROOT / "functions"
    build_dir: Path = PROJECT_ROOT / ".coafi" / "build"
    function_log_level: str = "INFO"
    metrics_namespace: str = "Coafi"
    record_retention_days: int = 30

    @classmethod
    def from_context(cls, node: Node, root: Path = PROJECT_ROOT) -> CoafiConfig:
        def get(key: str, default: Any) -> Any:
            value = node.try_get_context(f"coafi:{key}")
            return default if value is None else value

        stack_name = str(get("stackName", cls.stack_name))
        if not STACK_NAME_PATTERN.match(stack_name):
            raise ConfigError(
                f"context coafi:stackName={stack_name!r}: use letters, digits and dashes, "
                "starting with a letter, at most 64 characters"
            )
        log_level = str(get("functionLogLevel", cls.function_log_level)).upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"context coafi:functionLogLevel={log_level!r}: one of {', '.join(LOG_LEVELS)}")
        try:
            retention = int(get("recordRetentionDays", cls.record_retention_days))
        except (TypeError, ValueError):
            raise ConfigError("context coafi:recordRetentionDays: expected a whole number of days") from None
        if retention < 1:
            raise ConfigError("context coafi:recordRetentionDays: at least 1 day")
        return cls(
            stack_name=stack_name,
            retain_data=_bool("coafi:retainData", get("retainData", False)),
            definitions_dir=_path(root, get("definitionsDir", "statemachines")),
            functions_dir=_path(root, get("functionsDir", "functions")),
            build_dir=_path(root, get("buildDir", ".coafi/build")),
            function_log_level=log_level,
            metrics_namespace=str(get("metricsNamespace", cls.metrics_namespace)),
            record_retention_days=retention,
        )

    @property
    def requirements_file(self) -> Path:
        return self.functions_dir / "requirements.txt"

    @property
    def state_function_dir(self) -> Path:
        return self.functions_dir / "state"

    @property
    def actions_dir(self) -> Path:
        return self.functions_dir / "actions"
