"""What the functions' handlers import at cold start, and the two devices that keep it small: the lazy Powertools
Logger (coafi.telemetry.logger) and skipping pydantic's plugin discovery (coafi._plugin_discovery).

These assert the import graph, never a time: the time is bench/cold_start.py's (BENCHMARKS.md)."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coafi import _plugin_discovery
from coafi.telemetry.logger import LazyLogger

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO_ROOT / "functions"
HANDLERS = sorted(p.parent for p in [*FUNCTIONS.glob("*/handler.py"), *FUNCTIONS.glob("actions/*/handler.py")])
#: Modules no handler may import at cold start: each is loaded on first use, if ever.
DEFERRED = (
    "aws_lambda_powertools",  # Powertools: on the first invocation (LazyLogger, traced)
    "importlib.metadata",  # pydantic's plugin discovery: skipped under PYDANTIC_DISABLE_PLUGINS
    "urllib.request",  # custom resource responses: when one is sent
    "coafi.definitions.loader",  # the definition format and loader: never in a function
    "boto3",  # the SDK: the first client
    "logging",  # the loggers: the first log line
)
LAMBDA_ENVIRONMENT = {"COAFI_TABLE_NAME": "t", "PYDANTIC_DISABLE_PLUGINS": "__all__", "AWS_REGION": "us-east-1"}


def imported_by(code: str, *paths: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    program = (f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n{code}\n"
               "import json; print(json.dumps(sorted(sys.modules)))")
    environment = {"PATH": os.environ.get("PATH", ""), **(env or LAMBDA_ENVIRONMENT)}
    done = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, text=True, env=environment,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("folder", HANDLERS, ids=lambda p: p.name)
def test_a_handler_defers_powertools_the_sdk_and_plugin_discovery_to_first_use(folder: Path) -> None:
    modules = imported_by("import handler", folder, REPO_ROOT)
    assert "coafi" in modules
    assert not [m for m in DEFERRED if m in modules], f"{folder.name} imports at cold start: " + ", ".join(
        m for m in DEFERRED if m in modules)


def test_the_state_function_loads_waits_and_compensations_only_for_their_ops() -> None:
    modules = imported_by("import handler", FUNCTIONS / "state", REPO_ROOT)
    assert not {"coafi.runtime.wait_ops", "coafi.engine.waits", "coafi.saga.ops"} & modules


# -- pydantic's plugin discovery -------------------------------------------------------------------------------
def test_with_plugins_switched_off_no_model_imports_importlib_metadata() -> None:
    code = "import coafi\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nassert M(x=1).x == 1"
    assert "importlib.metadata" not in imported_by(code, REPO_ROOT)


def test_without_the_switch_pydantic_discovers_plugins_as_usual() -> None:
    code = "import coafi\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int"
    modules = imported_by(code, REPO_ROOT, env={"COAFI_TABLE_NAME": "t"})
    assert {"importlib.metadata", "pydantic.plugin._loader"} <= modules


@pytest.mark.parametrize("value", ["__all__", "1", "true"])
def test_the_stand_in_loader_is_registered_only_for_the_values_pydantic_honours(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, _plugin_discovery.LOADER, raising=False)
    assert not _plugin_discovery.skip_plugin_discovery({"PYDANTIC_DISABLE_PLUGINS": "logfire"})
    assert not _plugin_discovery.skip_plugin_discovery({})
    assert _plugin_discovery.skip_plugin_discovery({"PYDANTIC_DISABLE_PLUGINS": value})
    assert list(sys.modules[_plugin_discovery.LOADER].get_plugins()) == []
    assert not _plugin_discovery.skip_plugin_discovery({"PYDANTIC_DISABLE_PLUGINS": value})  # once only


def test_pydantic_still_finds_its_plugins_through_the_module_the_stand_in_replaces() -> None:
    """A pydantic release that moves plugin discovery elsewhere fails here instead of silently costing 20 ms."""
    from pydantic.plugin import _schema_validator

    assert "from ._loader import get_plugins" in inspect.getsource(_schema_validator)
    code = "import pydantic.plugin._loader as loader, inspect; print(inspect.signature(loader.get_plugins))"
    assert "()" in subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                                  check=True).stdout


# -- the lazy Logger ---------------------------------------------------------------------------------------------
CONTEXT = SimpleNamespace(function_name="fn", function_memory_size=128, memory_limit_in_mb=128,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
                          aws_request_id="req-1", function_version="$LATEST")


def test_the_lazy_logger_logs_as_powertools_with_the_lambda_context_and_correlation_id() -> None:
    stream = io.StringIO()
    service = f"lazy-{uuid.uuid4().hex}"  # Powertools' loggers of one service share their keys
    logger = LazyLogger(service=service, logger_handler=logging.StreamHandler(stream))

    @logger.inject_lambda_context(correlation_id_path="executionId")
    def handler(event: dict[str, Any], context: Any) -> str:
        logger.append_keys(step_id=event["stepId"])
        logger.info("hello")
        return "done"

    assert not logger.made  # decorating made nothing
    assert handler({"executionId": "exec-1", "stepId": "s1"}, CONTEXT) == "done"
    assert logger.made
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "hello" and line["service"] == service
    assert line["correlation_id"] == "exec-1" and line["step_id"] == "s1"
    assert line["function_request_id"] == "req-1" and line["function_name"] == "fn"


def test_the_lazy_logger_decorates_bare_too_and_reraises() -> None:
    logger = LazyLogger(service="bare")

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> None:
        raise ValueError(event["why"])

    with pytest.raises(ValueError, match="boom"):
        handler({"why": "boom"}, CONTEXT)
    assert logger.service == "bare"
    with pytest.raises(AttributeError):
        logger._missing  # noqa: B018 - its own private names never reach the real logger
