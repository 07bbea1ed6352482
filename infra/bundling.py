"""The shared Lambda layer, built without Docker.

``<build>/deps-<requirements hash>/python``: ``pip install --target`` of ``functions/requirements.txt`` for
the Lambda platform (manylinux2014 x86_64 wheels, CPython 3.12, binary only), cached per requirements hash.
``<build>/layer/python``: those dependencies plus the ``coafi`` package (without the parts that only run on a
developer's machine), rebuilt only when the requirements or the ``coafi`` sources change.

The layer's asset hash is the content hash of its inputs (``AssetHashType.CUSTOM``): repeated synths with
unchanged inputs cost a hash of a few dozen files and produce the same asset.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import coafi

#: Bump when the recipe below changes in a way the input hash cannot see.
RECIPE_VERSION = "3"  # 2: ships CPython 3.12 bytecode; 3: leaves out what the runtime provides
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_x86_64"
#: Parts of ``coafi`` that never run inside Lambda (local cloud harness, console script).
#: What only the command line and tests use stays out of the layer (smaller package, faster cold start).
EXCLUDED_SUBPACKAGES = frozenset(
    {"local", "cli", "testing", "demo.py", "deploy.py", "executions.py", "cost.py", "cost_cli.py"}
)
EXCLUDED_NAMES = frozenset({"__pycache__"})
#: What Lambda's Python runtime provides (/var/runtime): pulled in as dependencies (the X-Ray SDK needs
#: botocore), they would shadow the runtime's copies from the layer and add ~25 MB. Left out of the layer.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "dateutil", "python_dateutil", "urllib3", "six")
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
HASH_FILE = ".coafi-layer-hash"


class BundlingError(RuntimeError):
    """The layer could not be built; the message says what to do."""


@dataclass(frozen=True)
class LayerBuild:
    path: Path  # the asset folder (holds ``python/``)
    asset_hash: str
    rebuilt: bool


def _log(message: str) -> None:
    # stderr: the CDK CLI shows it while synthesizing, and stdout stays free for the app.
    print(f"[coafi] {message}", file=sys.stderr, flush=True)


def package_files(package_dir: Path) -> list[Path]:
    """The ``coafi`` files that go into the layer, relative to ``package_dir``, sorted."""
    files: list[Path] = []
    for path in package_dir.rglob("*"):
        rel = path.relative_to(package_dir)
        if not path.is_file() or any(part in EXCLUDED_NAMES for part in rel.parts):
            continue
        if rel.parts[0] in EXCLUDED_SUBPACKAGES or path.suffix in EXCLUDED_SUFFIXES:
            continue
        files.append(rel)
    return sorted(files)


def _requirements_hash(requirements: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE_VERSION};python={PYTHON_VERSION};platform={PLATFORM}\n".encode())
    digest.update(requirements.read_bytes())
    return digest.hexdigest()


def layer_hash(requirements: Path, package_dir: Path) -> str:
    """Content hash of everything that ends up in the layer."""
    digest = hashlib.sha256(_requirements_hash(requirements).encode())
    for rel in package_files(package_dir):
        digest.update(b"\0" + rel.as_posix().encode() + b"\0")
        digest.update((package_dir / rel).read_bytes())
    return digest.hexdigest()


@contextmanager
def _locked(build_dir: Path) -> Iterator[None]:
    """One builder at a time (a test session and a ``cdk synth`` may run together)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip_install(requirements: Path, target: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(target),
        "--platform", PLATFORM,
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",  # bytecode of the build interpreter would be useless to Lambda's 3.12
        "--disable-pip-version-check",
        "--quiet",
        "-r", str(requirements),
    ]
    _log(f"pip install -r {requirements} (Lambda: CPython {PYTHON_VERSION}, {PLATFORM})")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(
            f"building the shared layer failed: pip exited with {result.returncode}.\n"
            f"command: {' '.join(command)}\n{result.stderr.strip() or result.stdout.strip()}\n"
            "Every requirement needs a manylinux x86_64 wheel for CPython 3.12 (binary only, no Docker)."
        )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: not importable, not needed
    _drop_runtime_provided(target)
    _log(f"dependencies installed in {time.monotonic() - started:.1f}s")


def _drop_runtime_provided(site: Path) -> None:
    """Remove the packages Lambda's runtime provides (and their metadata) from an installed dependency set."""
    for entry in site.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name.removesuffix(".py")
        if name not in RUNTIME_PROVIDED:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _dependencies(requirements: Path, build_dir: Path) -> Path:
    """``deps-<hash>/python`` for these requirements, installing them once."""
    folder = build_dir / f"deps-{_requirements_hash(requirements)[:16]}"
    if (folder / HASH_FILE).is_file():
        return folder / "python"
    staging = build_dir / f".staging-deps-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    _pip_install(requirements, staging / "python")
    (staging / HASH_FILE).write_text(_requirements_hash(requirements))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    for old in build_dir.glob("deps-*"):  # keep only the current dependency set
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder / "python"


def build_shared_layer(
    requirements: Path, build_dir: Path, package_dir: Path | None = None
) -> LayerBuild:
    """Build (or reuse) the layer folder; returns it with its content hash."""
    package_dir = package_dir or Path(coafi.__file__).resolve().parent
    if not requirements.is_file():
        raise BundlingError(f"{requirements} not found: it lists the shared layer's dependencies")
    wanted = layer_hash(requirements, package_dir)
    layer = build_dir / "layer"
    if _read(layer / HASH_FILE) == wanted:
        _log(f"shared layer up to date ({wanted[:12]})")
        return LayerBuild(layer, wanted, rebuilt=False)
    with _locked(build_dir):
        if _read(layer / HASH_FILE) == wanted:  # built by whoever held the lock
            return LayerBuild(layer, wanted, rebuilt=False)
        started = time.monotonic()
        deps = _dependencies(requirements, build_dir)
        staging = build_dir / f".staging-layer-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(deps, staging / "python")
        for rel in package_files(package_dir):
            dest = staging / "python" / "coafi" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(package_dir / rel, dest)
        _compile_bytecode(staging / "python")
        (staging / HASH_FILE).write_text(wanted)
        shutil.rmtree(layer, ignore_errors=True)
        staging.rename(layer)
        _log(f"shared layer built in {time.monotonic() - started:.1f}s ({wanted[:12]}) at {layer}")
    return LayerBuild(layer, wanted, rebuilt=True)


def lambda_python() -> str | None:
    """A CPython 3.12 interpreter on this machine (Lambda's python3.12), to compile the layer's bytecode."""
    candidates = [shutil.which(f"python{PYTHON_VERSION}")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += [str(p) for p in sorted(Path(pyenv_root, "versions").glob(f"{PYTHON_VERSION}.*/bin/python3"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    return None


def _compile_bytecode(site: Path) -> None:
    """Ship ``__pycache__`` for CPython 3.12: Lambda's /opt is read-only, so without it every cold start
    compiles pydantic, Powertools and coafi from source (~150 ms). ``unchecked-hash`` pycs are used without
    comparing source timestamps, and depend only on the sources, so the asset stays reproducible."""
    python = lambda_python()
    if python is None:
        _log(f"no CPython {PYTHON_VERSION} found: the layer ships without bytecode (slower cold starts)")
        return
    result = subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(site)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        _log(f"bytecode compilation failed, shipping sources only: {result.stdout[-500:]}{result.stderr[-500:]}")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
