"""Lambda runtime -> host Python interpreter mapping (pure logic, no LocalStack import).

Resolution order for a runtime such as ``python3.12``:

1. ``COAFI_LAMBDA_INTERPRETERS`` (JSON object runtime -> interpreter path), set by ``coafi local up``;
2. ``pyenv prefix <version>`` for the pinned pyenv version of the runtime (``PYTHON_RUNTIME_VERSIONS``);
3. ``$PYENV_ROOT/versions/<version>/bin/python3`` (``PYENV_ROOT`` defaults to ``~/.pyenv``).

Each runtime is resolved once per process; unsupported runtimes raise :class:`UnsupportedRuntimeError`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

#: Lambda runtime identifier -> pyenv version of the interpreter that runs it locally.
PYTHON_RUNTIME_VERSIONS: dict[str, str] = {
    "python3.12": "3.12.1",
    "python3.13": "3.13.0",
}

INTERPRETERS_ENV = "COAFI_LAMBDA_INTERPRETERS"


class UnsupportedRuntimeError(Exception):
    """The function's runtime cannot be run by the COAFI local executor."""


def supported_runtimes() -> list[str]:
    return sorted(PYTHON_RUNTIME_VERSIONS)


def _interpreters_from_env(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get(INTERPRETERS_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UnsupportedRuntimeError(f"{INTERPRETERS_ENV} is not a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise UnsupportedRuntimeError(f"{INTERPRETERS_ENV} must be a JSON object runtime -> interpreter path")
    return {str(k): str(v) for k, v in value.items()}


def _pyenv_prefix(version: str) -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        out = subprocess.run(
            [pyenv, "prefix", version], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return Path(out.stdout.strip().splitlines()[0])


def find_interpreter(
    runtime: str | None,
    *,
    env: Mapping[str, str] | None = None,
    pyenv_prefix: Callable[[str], Path | None] = _pyenv_prefix,
) -> Path:
    """Return the interpreter for ``runtime`` (no caching). Raises :class:`UnsupportedRuntimeError`."""
    environ = os.environ if env is None else env
    if not runtime:
        raise UnsupportedRuntimeError(
            "Container-image functions (no runtime) are not supported by the COAFI local Lambda executor; "
            f"use a zip package with one of: {', '.join(supported_runtimes())}"
        )
    overrides = _interpreters_from_env(environ)
    if runtime in overrides:
        path = Path(overrides[runtime])
        if not os.access(path, os.X_OK):
            raise UnsupportedRuntimeError(
                f"Interpreter {path} configured for {runtime} in {INTERPRETERS_ENV} is not executable"
            )
        return path
    version = PYTHON_RUNTIME_VERSIONS.get(runtime)
    if version is None:
        raise UnsupportedRuntimeError(
            f"Runtime {runtime!r} is not supported by the COAFI local Lambda executor "
            f"(supported: {', '.join(supported_runtimes())}; others can be mapped with {INTERPRETERS_ENV})"
        )
    candidates: list[Path] = []
    prefix = pyenv_prefix(version)
    if prefix is not None:
        candidates.append(prefix / "bin" / "python3")
    pyenv_root = Path(environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates.append(pyenv_root / "versions" / version / "bin" / "python3")
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise UnsupportedRuntimeError(
        f"No interpreter found for {runtime}: expected pyenv version {version} "
        f"(tried {', '.join(str(c) for c in candidates)}); install it with `pyenv install {version}` "
        f"or map it with {INTERPRETERS_ENV}"
    )


_cache: dict[str, Path] = {}
_cache_lock = threading.Lock()


def resolve_interpreter(runtime: str | None) -> Path:
    """Cached :func:`find_interpreter` against the process environment (resolved once per runtime)."""
    key = runtime or ""
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None:
            cached = find_interpreter(runtime)
            _cache[key] = cached
        return cached
