"""Where the embedded local cloud lives on disk: everything under ``<project_root>/.coafi/`` (never committed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT_ENV = "COAFI_PROJECT_ROOT"
_ROOT_MARKERS = ("pyproject.toml", "cdk.json", ".git")

#: Source folder of the LocalStack plugin package and the pinned requirement files (shipped inside coafi).
PLUGIN_SOURCE = Path(__file__).resolve().parent / "localstack_plugin"


def find_project_root(start: Path | None = None) -> Path:
    """``$COAFI_PROJECT_ROOT``, else the nearest folder (from ``start`` or the cwd up) with a project marker."""
    if env := os.environ.get(PROJECT_ROOT_ENV):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return here


@dataclass(frozen=True)
class LocalLayout:
    project_root: Path

    @classmethod
    def for_root(cls, project_root: Path | None) -> LocalLayout:
        return cls(project_root.resolve() if project_root is not None else find_project_root())

    @property
    def coafi_dir(self) -> Path:
        return self.project_root / ".coafi"

    # --- installation ------------------------------------------------------------------------------------
    @property
    def venv(self) -> Path:
        return self.coafi_dir / "localstack-venv"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def npm_prefix(self) -> Path:
        return self.coafi_dir / "npm"

    @property
    def build_dir(self) -> Path:
        return self.coafi_dir / "build"

    @property
    def lambda_runtime_dir(self) -> Path:
        """``<runtime>/`` site folders with the AWS SDK for local Lambdas (AWS's /var/runtime)."""
        return self.coafi_dir / "lambda-runtime"

    # --- LocalStack's file system (FILESYSTEM_ROOT) -------------------------------------------------------
    @property
    def filesystem_root(self) -> Path:
        return self.coafi_dir / "localstack-fs"

    @property
    def localstack_libs(self) -> Path:
        return self.filesystem_root / "var" / "lib" / "localstack" / "lib"

    @property
    def dynamodb_local_dir(self) -> Path:
        return self.localstack_libs / "dynamodb-local" / "2"

    @property
    def java21_link(self) -> Path:
        return self.localstack_libs / "java" / "21"

    @property
    def tmp_dir(self) -> Path:
        return self.filesystem_root / "tmp"

    # --- runtime state -----------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.coafi_dir / "local"

    @property
    def markers_dir(self) -> Path:
        return self.state_dir / "markers"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "localstack.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "localstack.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "localstack.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "up.lock"

    @property
    def clock_file(self) -> Path:
        """Offset of the local clock (``coafi local clock``), read by the local schedule firing."""
        return self.state_dir / "clock.json"

    @property
    def schedules_state_file(self) -> Path:
        """When each local schedule last fired."""
        return self.state_dir / "schedules.json"
