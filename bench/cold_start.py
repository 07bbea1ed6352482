"""Cold start of each Lambda function: the import time of its handler module in a fresh interpreter.

Every folder of ``functions/`` with a ``handler.py`` (the state function, the task dispatcher) and every action.

    .venv/bin/python bench/cold_start.py [--runs N] [--only NAME ...]

Set up like Lambda's python3.12 runtime: the function folder (``/var/task``) first on ``sys.path``, then the
shared layer (``/opt/python``, built by ``infra/bundling.py`` for CPython 3.12, the same folder ``cdk synth``
deploys), the standard library, and last the AWS SDK the runtime provides (``/var/runtime``: the boto3 the local
cloud installs for its Lambdas in ``.coafi/lambda-runtime/python3.12``, else this venv's). The interpreter is
Python 3.12 from pyenv when there is one (what the layer's binary wheels are built for), else this one; the
output says which.

Each run is a new process (``python -B -I -c ...``), measured from outside: its CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``), the figure, as it does not grow when other work competes for the CPU, and its
wall-clock time from spawn to exit, for reference. Per function:

- **bare**: ``python -c pass`` with the same paths: the baseline, measured in the same run;
- **import**: ``import handler``; the figure the goal is about: ``import - bare`` under 150 ms;
- **first call**: ``import handler`` plus what the first invocation loads lazily: a Powertools ``Logger`` and a
  boto3 DynamoDB client (no request is sent); for the dispatcher also its runtime (``coafi.tasks.runtime``:
  Powertools batch and idempotency, the task models), which its handler imports on the first message.

Figures are the best of N runs, interleaved (noise from other work on the machine only ever adds time; wall
medians are in the JSON). Two variants: **source only** (copies of the folders *without*
bytecode: Lambda's ``/var/task`` and ``/opt`` are read-only, so every cold start compiles every module from
source; the "as_deployed" key in the JSON, which is what layers built before recipe 2 shipped) and **with
bytecode** (the layer and the runtime's SDK compiled first, unchecked-hash ``.pyc``; the function folders stay
source, as CDK packages them: what deploys since ``infra/bundling.py`` recipe 2). One more ``-X importtime`` run
per function and variant says where the time goes. In the same run, with bytecode, the **floors**: pydantic and
one model, the same after ``import coafi`` (no plugin discovery), and with Powertools' Logger imported too: what
any handler that validates its event with a model pays.

Also each function's deployment package (its folder zipped, as CDK excludes) and the layer's size, zipped and
unzipped. Written to ``bench/results/cold_start.json`` (``coafi cost`` reads the INIT durations).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

from coafi.cost import save_figures

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
BUILD_DIR = REPO_ROOT / ".coafi" / "build"
RUNTIME_SDK = REPO_ROOT / ".coafi" / "lambda-runtime" / "python3.12"
LAMBDA_PYTHON = "3.12"
GOAL_MS = 150.0
#: infra/constructs/function.py CODE_EXCLUDES (not imported: that would load the CDK).
CODE_EXCLUDES = ("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "tests")
LAYER_EXCLUDES = (".coafi-layer-hash", "__pycache__", "*.pyc")
FIRST_CALL = (
    "from aws_lambda_powertools import Logger; Logger(); import coafi.aws; coafi.aws.client('dynamodb')"
)
#: What a function's first invocation imports beyond FIRST_CALL (the dispatcher builds its runtime then).
FIRST_CALL_EXTRA = {"dispatcher": "; import coafi.tasks.runtime"}
ENVIRONMENT = {
    "COAFI_TABLE_NAME": "bench-state", "COAFI_EVENT_BUS_NAME": "bench-bus", "COAFI_RETENTION_DAYS": "30",
    "POWERTOOLS_SERVICE_NAME": "bench", "POWERTOOLS_METRICS_NAMESPACE": "Bench", "POWERTOOLS_LOG_LEVEL": "INFO",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as infra/constructs/core.py sets it
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
}


# -- what runs ------------------------------------------------------------------------------------------------
def function_folders() -> dict[str, Path]:
    """Every function folder the app deploys, by name: ``functions/<name>/`` (the state function, the task
    dispatcher...) and ``functions/actions/<name>/``, each holding a ``handler.py``."""
    folders = {p.parent.name: p.parent for p in sorted(FUNCTIONS_DIR.glob("*/handler.py"))}
    folders |= {p.parent.name: p.parent for p in sorted((FUNCTIONS_DIR / "actions").glob("*/handler.py"))}
    return folders


def _load_bundling() -> ModuleType:
    """infra/bundling.py on its own: importing the ``infra`` package would start the CDK."""
    spec = importlib.util.spec_from_file_location("coafi_bench_bundling", REPO_ROOT / "infra" / "bundling.py")
    if spec is None or spec.loader is None:
        raise ImportError("infra/bundling.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def shared_layer() -> Path:
    """The layer's ``python/`` folder, built (or found up to date) exactly as ``cdk synth`` builds it."""
    bundling = _load_bundling()
    build = bundling.build_shared_layer(FUNCTIONS_DIR / "requirements.txt", BUILD_DIR)
    return Path(build.path) / "python"


def interpreter() -> tuple[Path, str]:
    """Python 3.12 (the Lambda runtime's) if pyenv has it, else this interpreter; and a description."""
    candidates = [Path(p) for p in (shutil.which(f"python{LAMBDA_PYTHON}"),) if p]
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted((root / "versions").glob(f"{LAMBDA_PYTHON}.*/bin/python{LAMBDA_PYTHON}"), reverse=True)
    for candidate in candidates:
        probe = subprocess.run([str(candidate), "-c", "import sys; print(sys.version.split()[0])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.startswith(LAMBDA_PYTHON):
            return candidate, f"Python {probe.stdout.strip()} ({candidate}), like Lambda's python3.12"
    version = ".".join(map(str, sys.version_info[:3]))
    return Path(sys.executable), f"Python {version} ({sys.executable}): no Python {LAMBDA_PYTHON} found"


def runtime_sdk() -> tuple[Path, str]:
    if (RUNTIME_SDK / "boto3").is_dir():
        return RUNTIME_SDK, f"boto3 of the local Lambda runtime ({RUNTIME_SDK.relative_to(REPO_ROOT)})"
    import boto3

    site = Path(boto3.__file__).resolve().parent.parent
    return site, f"boto3 of this venv ({site}); run `coafi local up` once for the runtime's own copy"


def _ignore(patterns: tuple[str, ...]) -> Any:
    return shutil.ignore_patterns(*patterns)


@dataclass
class Sandbox:
    """Copies of the folders, without bytecode, in a temp dir: /var/task per function, /opt/python, /var/runtime."""

    root: Path
    tasks: dict[str, Path]
    layer: Path
    runtime: Path

    @classmethod
    def create(cls, root: Path, folders: dict[str, Path], layer: Path, sdk: Path) -> Sandbox:
        tasks = {}
        for name, folder in folders.items():
            tasks[name] = root / "task" / name
            shutil.copytree(folder, tasks[name], ignore=_ignore(CODE_EXCLUDES))
        shutil.copytree(layer, root / "opt" / "python", ignore=_ignore(LAYER_EXCLUDES))
        runtime = root / "runtime"
        runtime.mkdir()
        for package in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"):
            if (sdk / package).is_dir():
                shutil.copytree(sdk / package, runtime / package, ignore=_ignore(("__pycache__",)))
            elif (sdk / package).is_file():
                shutil.copy2(sdk / package, runtime / package)
        return cls(root, tasks, root / "opt" / "python", runtime)

    def compile(self, python: Path, include_runtime_only: bool = False) -> None:
        """Unchecked-hash bytecode for the copies (with the interpreter that will run them)."""
        # the functions' own folders stay source only, as deployed (infra/constructs/function.py CODE_EXCLUDES)
        targets = [self.runtime] if include_runtime_only else [self.runtime, self.layer]
        for target in targets:
            subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                            "unchecked-hash", str(target)], check=True, capture_output=True)


# -- timing ---------------------------------------------------------------------------------------------------
def program(sandbox: Sandbox, name: str, body: str) -> str:
    paths = [str(sandbox.tasks[name]), str(sandbox.layer)]
    return f"import sys; sys.path[:0] = {paths!r}; sys.path.append({str(sandbox.runtime)!r}){body}"


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    cpu_ms: float  # user + system time of the process: what it costs, whatever else the machine is doing
    stderr: str


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(python: Path, code: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> Sample:
    cpu_before, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run([str(python), "-B", "-I", *extra, "-c", code], env=env, capture_output=True, text=True,
                          check=False)
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{done.stderr[-2000:]}")
    return Sample(wall, (_children_cpu_s() - cpu_before) * 1000, done.stderr)


COMMANDS = ("bare", "import", "first_call")


@dataclass
class Timing:
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {k: [] for k in COMMANDS})

    def summary(self) -> dict[str, float]:
        """Per command: CPU time (the figure; best of the runs) and wall time (best and median); and each over
        bare Python."""
        figures: dict[str, float] = {}
        for key, samples in self.samples.items():
            figures[f"{key}_ms"] = min(s.cpu_ms for s in samples)
            figures[f"wall_{key}_ms"] = min(s.wall_ms for s in samples)
            figures[f"median_wall_{key}_ms"] = statistics.median(s.wall_ms for s in samples)
        for key in ("import", "first_call"):
            figures[f"{key}_over_bare_ms"] = figures[f"{key}_ms"] - figures["bare_ms"]
            figures[f"wall_{key}_over_bare_ms"] = figures[f"wall_{key}_ms"] - figures["wall_bare_ms"]
        return figures


def measure(python: Path, sandbox: Sandbox, name: str, runs: int, env: dict[str, str]) -> Timing:
    timing = Timing()
    bodies = ("", "; import handler", f"; import handler; {FIRST_CALL}{FIRST_CALL_EXTRA.get(name, '')}")
    codes = {key: program(sandbox, name, body) for key, body in zip(COMMANDS, bodies, strict=True)}
    timed(python, codes["first_call"], env)  # warm the page cache: the first spawn reads every file from disk
    for _ in range(runs):
        for key, code in codes.items():
            timing.samples[key].append(timed(python, code, env))
    return timing


# -- where the time goes ------------------------------------------------------------------------------------
def import_breakdown(stderr: str) -> tuple[dict[str, float], dict[str, float]]:
    """From ``-X importtime``: milliseconds by top-level package (self times summed) and by direct import of the
    handler module (cumulative)."""
    by_package: dict[str, float] = defaultdict(float)
    direct: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, raw = line.split(":", 1)[1].split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        module = raw.strip()
        by_package[module.split(".")[0]] += int(self_us) / 1000
        if depth == 1:  # the handler is at depth 0 (imported by -c), its own imports at depth 1
            direct[module] = int(cumulative_us) / 1000
    return dict(by_package), direct


def top(values: dict[str, float], n: int) -> str:
    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return ", ".join(f"{k} {v:.0f}" for k, v in ranked)


# -- sizes ----------------------------------------------------------------------------------------------------
def zipped_size(folder: Path, excludes: tuple[str, ...]) -> tuple[int, int]:
    """(zipped, unzipped) bytes of a folder as CDK would package it."""
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if not path.is_file() or any(fnmatch(part, p) for part in rel.parts for p in excludes):
                continue
            archive.write(path, rel.as_posix())
            unzipped += path.stat().st_size
    return len(buffer.getvalue()), unzipped


# -- report ---------------------------------------------------------------------------------------------------
def verdict(over_bare_ms: float) -> str:
    return "ok" if over_bare_ms < GOAL_MS else "MISS"


def _columns(figures: dict[str, float] | None) -> str:
    if figures is None:
        return f"{'-':>6} {'-':>5} {'':>4} {'-':>5} {'-':>5}"
    return (f"{figures['import_ms']:>6.0f} {figures['import_over_bare_ms']:>5.0f} "
            f"{verdict(figures['import_over_bare_ms']):>4} {figures['wall_import_over_bare_ms']:>5.0f} "
            f"{figures['first_call_over_bare_ms']:>5.0f}")


def report(rows: dict[str, dict[str, Any]], layer_sizes: tuple[int, int], notes: list[str]) -> str:
    head = (f"{'function':<26} | {'bare':>4} {'import':>6} {'over':>5} {'goal':>4} {'wall':>5} {'1st':>5} | "
            f"{'import':>6} {'over':>5} {'goal':>4} {'wall':>5} {'1st':>5} | {'package':>8}")
    lines = [*notes, "", f"{'CPU ms, best of N':<26} | {'source only (no .pyc)':<34} | "
             f"{'with bytecode (as deployed)':<28} |", head, "-" * len(head)]
    for name, row in rows.items():
        cold, warm = row["as_deployed"], row.get("with_bytecode")
        lines.append(f"{name:<26} | {cold['bare_ms']:>4.0f} {_columns(cold)} | {_columns(warm)} | "
                     f"{row['package_bytes'] / 1024:>6.1f}KB")
    lines += ["", "over: import minus bare, CPU time (user + system) of the processes; wall: the same in wall-clock "
                  "time (best run); 1st: import plus the first call's setup, minus bare", "",
              f"goal: import - bare < {GOAL_MS:.0f} ms. shared layer: {layer_sizes[0] / 2**20:.1f} MB zipped, "
                  f"{layer_sizes[1] / 2**20:.1f} MB unzipped (Lambda's limit: 250 MB unzipped, function + layers)", "",
              "where the import time goes (-X importtime, ms; importtime itself adds overhead):"]
    for name, row in rows.items():
        for variant in ("as_deployed", "with_bytecode"):
            breakdown = row.get(f"importtime_{variant}")
            if breakdown:
                label = f"{name} ({variant.replace('_', ' ')})"
                lines.append(f"  {label}: by package: {top(breakdown['by_package'], 6)}")
                lines.append(f"  {' ' * len(label)}  handler imports: {top(breakdown['direct_imports'], 4)}")
    return "\n".join(lines)


def breakdown(python: Path, sandbox: Sandbox, name: str, env: dict[str, str]) -> dict[str, dict[str, float]]:
    sample = timed(python, program(sandbox, name, "; import handler"), env, ("-X", "importtime"))
    by_package, direct = import_breakdown(sample.stderr)
    return {"by_package": largest(by_package, 15), "direct_imports": largest(direct, 10)}


def largest(values: dict[str, float], n: int) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:n])


#: Functions that build no pydantic model at import (the dispatcher's runtime comes with its first message).
DEFERS_PYDANTIC = frozenset({"dispatcher"})
#: Baselines in the same run (with bytecode, the layer on the path): what pydantic and Powertools cost by themselves,
#: the floor under every handler that validates its event with a model.
FLOORS = {
    "pydantic, one model": "\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int",
    "the same after `import coafi` (no plugin discovery)":
        "\nimport coafi\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int",
    "the same plus Powertools' Logger imported":
        "\nimport coafi\nfrom aws_lambda_powertools import Logger\nfrom pydantic import BaseModel\n"
        "class M(BaseModel):\n    x: int",
}


def measure_floors(python: Path, sandbox: Sandbox, name: str, runs: int, env: dict[str, str]) -> dict[str, float]:
    """Each floor's CPU ms over bare Python (best of ``runs``, interleaved with bare)."""
    bare: list[float] = []
    samples: dict[str, list[float]] = {label: [] for label in FLOORS}
    for _ in range(runs):
        bare.append(timed(python, program(sandbox, name, ""), env).cpu_ms)
        for label, body in FLOORS.items():
            samples[label].append(timed(python, program(sandbox, name, body), env).cpu_ms)
    return {label: min(values) - min(bare) for label, values in samples.items()}


def measure_function(python: Path, sandbox: Sandbox, name: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    cold = measure(python, sandbox, name, runs, env).summary()
    return {"as_deployed": cold, "importtime_as_deployed": breakdown(python, sandbox, name, env),
            "init_ms": cold["wall_first_call_ms"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command; the best is reported")
    parser.add_argument("--only", action="append", default=[], help="function name (state, or an action folder)")
    parser.add_argument("--no-bytecode-variant", action="store_true", help="skip the 'with bytecode' runs")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/cold_start.json")
    args = parser.parse_args(argv)
    folders = {k: v for k, v in function_folders().items() if not args.only or k in args.only}
    python, python_note = interpreter()
    sdk, sdk_note = runtime_sdk()
    layer = shared_layer()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **ENVIRONMENT}
    notes = [f"Cold start: {len(folders)} function(s), {args.runs} run(s) each", f"interpreter: {python_note}",
             f"layer: {layer.relative_to(REPO_ROOT)} (built by infra/bundling.py for CPython 3.12)",
             f"runtime SDK: {sdk_note}, compiled (assumed shipped with bytecode by the runtime)"]
    rows: dict[str, dict[str, Any]] = {}
    floors: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="coafi-cold-") as tmp:
        sandbox = Sandbox.create(Path(tmp), folders, layer, sdk)
        sandbox.compile(python, include_runtime_only=True)
        for name in folders:
            rows[name] = measure_function(python, sandbox, name, args.runs, env)
            print(f"measured {name}", file=sys.stderr)
        if not args.no_bytecode_variant:
            sandbox.compile(python)
            for name in folders:
                rows[name]["with_bytecode"] = measure(python, sandbox, name, args.runs, env).summary()
                rows[name]["importtime_with_bytecode"] = breakdown(python, sandbox, name, env)
            floors = measure_floors(python, sandbox, next(iter(folders)), args.runs, env)
    for name, folder in folders.items():
        rows[name]["package_bytes"], rows[name]["package_unzipped_bytes"] = zipped_size(folder, CODE_EXCLUDES)
    layer_sizes = zipped_size(layer, LAYER_EXCLUDES)
    print(report(rows, layer_sizes, notes))
    if floors:
        print("\nbaselines, same run, with bytecode (CPU ms over bare Python):")
        for label, value in floors.items():
            print(f"  {label}: {value:.0f}")
        floor = floors["the same after `import coafi` (no plugin discovery)"]
        over = {n: r["with_bytecode"]["import_over_bare_ms"] for n, r in rows.items()
                if "with_bytecode" in r and n not in DEFERS_PYDANTIC}
        print(f"  handlers with models at import over that floor: {min(over.values()) - floor:.0f} to "
              f"{max(over.values()) - floor:.0f} ms "
              f"({min(over.values()) / floor:.2f}x to {max(over.values()) / floor:.2f}x the floor)")
    if not args.no_save:
        path = save_figures(REPO_ROOT, "cold_start", {
            "floors_over_bare_ms": floors,
            "interpreter": python_note, "runtime_sdk": sdk_note, "runs": args.runs, "goal_ms": GOAL_MS,
            "layer_bytes": layer_sizes[0], "layer_unzipped_bytes": layer_sizes[1], "functions": rows,
        })
        print(f"\nfigures written to {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
