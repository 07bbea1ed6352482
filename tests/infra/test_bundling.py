"""The shared layer: content hash, what goes in, and that Lambda's Python can import the handlers with it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.bundling import HASH_FILE, build_shared_layer, layer_hash, package_files
from infra.discovery import discover_actions
from tests.infra.conftest import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "functions" / "requirements.txt"
BUILD_DIR = REPO_ROOT / ".coafi" / "build"


def _fake_package(root: Path) -> Path:
    package = root / "coafi"
    for rel in ("__init__.py", "runtime/__init__.py", "local/harness.py", "cli/main.py", "py.typed"):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(f"# {rel}\n")
    (package / "runtime" / "__pycache__").mkdir()
    (package / "runtime" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    return package


def test_layer_leaves_out_local_only_code_and_bytecode(tmp_path: Path) -> None:
    files = [p.as_posix() for p in package_files(_fake_package(tmp_path))]
    assert files == ["__init__.py", "py.typed", "runtime/__init__.py"]


def test_layer_hash_follows_content_only(tmp_path: Path) -> None:
    package = _fake_package(tmp_path)
    first = layer_hash(REQUIREMENTS, package)
    assert layer_hash(REQUIREMENTS, package) == first
    (package / "local" / "harness.py").write_text("# changed, but not shipped\n")
    assert layer_hash(REQUIREMENTS, package) == first
    (package / "runtime" / "__init__.py").write_text("# changed\n")
    assert layer_hash(REQUIREMENTS, package) != first


@pytest.fixture(scope="module")
def layer() -> Path:
    return build_shared_layer(REQUIREMENTS, BUILD_DIR).path


def test_layer_holds_coafi_and_the_dependencies_for_lambda(layer: Path) -> None:
    python = layer / "python"
    assert (python / "coafi" / "runtime" / "__init__.py").is_file()
    assert not (python / "coafi" / "local").exists() and not (python / "coafi" / "cli").exists()
    assert (python / "aws_lambda_powertools").is_dir() and (python / "pydantic").is_dir()
    assert not (python / "yaml").exists() and not (python / "boto3").exists()
    cores = [p.name for p in (python / "pydantic_core").glob("_pydantic_core*.so")]
    assert cores and all("cpython-312-x86_64-linux-gnu" in name for name in cores), cores
    assert (layer / HASH_FILE).is_file()


def test_builds_are_cached_by_content(layer: Path, tmp_path: Path) -> None:
    # A private build folder seeded with the installed dependencies (no pip), and a package nobody edits.
    build = tmp_path / "build"
    for deps in BUILD_DIR.glob("deps-*"):
        shutil.copytree(deps, build / deps.name)
    package = _fake_package(tmp_path)
    first = build_shared_layer(REQUIREMENTS, build, package_dir=package)
    assert first.rebuilt and (first.path / "python" / "pydantic").is_dir()
    again = build_shared_layer(REQUIREMENTS, build, package_dir=package)
    assert (again.asset_hash, again.rebuilt) == (first.asset_hash, False)
    (package / "runtime" / "__init__.py").write_text("# changed\n")
    changed = build_shared_layer(REQUIREMENTS, build, package_dir=package)
    assert changed.rebuilt and changed.asset_hash != first.asset_hash
    assert (changed.path / "python" / "coafi" / "runtime" / "__init__.py").read_text() == "# changed\n"


def _lambda_python() -> str | None:
    """A CPython 3.12 like Lambda's (pyenv has 3.12.1 on these machines)."""
    candidates = [os.environ.get("COAFI_LAMBDA_PYTHON"), shutil.which("python3.12"),
                  str(Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
            capture_output=True, check=False,
        ).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize(
    "folder",
    [REPO_ROOT / "functions" / "state", *discover_actions(REPO_ROOT / "functions" / "actions").values()],
    ids=lambda p: p.name,
)
def test_handlers_import_with_only_the_layer_on_python_3_12(layer: Path, folder: Path) -> None:
    python = _lambda_python()
    if python is None:
        pytest.skip("no CPython 3.12 found (set COAFI_LAMBDA_PYTHON)")
    # -I: no user site, no venv; -B: do not write bytecode into the layer or the function folder.
    code = (f"import sys; sys.path[:0] = [{str(folder)!r}, {str(layer / 'python')!r}]; "
            "import handler; assert callable(handler.handler)")
    result = subprocess.run(
        [python, "-I", "-B", "-c", code], capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "COAFI_TABLE_NAME": "t", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr
