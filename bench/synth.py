"""CDK synth of the app with 1, 10 and 50 workflows: wall time and peak memory.

    .venv/bin/python bench/synth.py [--sizes 1,10,50]

Each size is synthesized in a fresh subprocess, in process (``aws_cdk.App(context=..., outdir=tmp)``, the context
of ``cdk.json`` plus ``coafi:definitionsDir`` pointing at a temp folder of generated definitions), with cdk-nag's
AwsSolutions checks as ``app.py`` runs them. Each generated workflow has the sample's six actions (from
``functions/actions``) in a diamond-shaped layout with two parallel pairs and an event trigger.

Inside each subprocess, in order: ``import aws_cdk`` (and the app's modules), a throw-away synth of an empty app
with one trivial stack (jsii warm-up), the **baseline**: the same trivial app synthesized again, then the COAFI
app. Times are wall clock (``time.perf_counter``) and CPU time (user + system of Python and of the jsii node
process); the ratio columns use CPU time and divide by the baseline of the same subprocess and by the 1-workflow
run. The shared layer is built (or found up to date) before any subprocess starts, so no row pays for
``pip``; every row still pays for hashing it and staging it into the output folder, as ``cdk synth`` does.

Each size runs ``--repeat`` times (default 2), each time in a new subprocess; the run with the cheapest synth is
kept (by CPU time), as other work on the machine only ever adds time.

Peak memory: the high-water mark of resident memory (``VmHWM``) of the Python process and of the jsii ``node``
process it drives, read from ``/proc`` just before the subprocess exits (falls back to ``ru_maxrss`` of Python
alone elsewhere). A subprocess that synthesizes only the trivial app gives the memory baseline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 10, 50)
ACTIONS = ("validate-content-parameters", "check-user-permissions", "generate-content", "store-content",
           "update-registry", "notify-content-generated")


# -- generated definitions -------------------------------------------------------------------------------
def workflow_definition(index: int) -> dict[str, Any]:
    """A six-step workflow on the sample's actions: validate -> (permissions | generate) -> store ->
    (registry | notify)."""
    return {
        "id": f"bench-{index:03d}",
        "name": f"Benchmark workflow {index}",
        "version": "1.0.0",
        "triggers": [{"type": "event", "source": ["coafi.bench"], "detailType": [f"Bench{index}Requested"]},
                     {"type": "manual"}],
        "steps": [
            {"id": "validateParameters", "type": "task", "action": ACTIONS[0],
             "parameters": {"allowedContentTypes": ["article"], "maxLengthWords": 500}},
            {"id": "checkPermissions", "type": "task", "action": ACTIONS[1], "dependencies": ["validateParameters"],
             "parameters": {"permissions": {"editor": ["article"]}}},
            {"id": "generateContent", "type": "task", "action": ACTIONS[2], "dependencies": ["validateParameters"],
             "retryPolicy": {"maxAttempts": 3, "intervalSeconds": 1, "backoffRate": 2}},
            {"id": "storeContent", "type": "task", "action": ACTIONS[3],
             "dependencies": ["checkPermissions", "generateContent"]},
            {"id": "updateRegistry", "type": "task", "action": ACTIONS[4], "dependencies": ["storeContent"],
             "parameters": {"registry": "content"}},
            {"id": "notifySubscribers", "type": "task", "action": ACTIONS[5], "dependencies": ["storeContent"]},
        ],
    }


def write_definitions(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = yaml.safe_dump(workflow_definition(index), sort_keys=False)
        (folder / f"bench-{index:03d}.yaml").write_text(text, encoding="utf-8")


# -- peak memory ------------------------------------------------------------------------------------------
def _status_kib(pid: int | str, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def peak_memory_mib() -> dict[str, float]:
    """Peak RSS of this process and of its descendants (the jsii node process), in MiB."""
    own = _status_kib("self", "VmHWM")
    if own is None:  # no /proc: Python's own peak only
        return {"python": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "node": 0.0}
    children = [_status_kib(pid, "VmHWM") or 0 for pid in _descendants(os.getpid())]
    return {"python": own / 1024, "node": sum(children) / 1024}


# -- one subprocess ---------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live descendants (the jsii node process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class Clock:
    """Wall and CPU seconds since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def trivial_synth(outdir: Path) -> tuple[float, float]:
    import aws_cdk as cdk

    clock = Clock()
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Trivial")
    cdk.CfnWaitConditionHandle(stack, "Nothing")
    app.synth()
    return clock.read()


def coafi_synth(outdir: Path, definitions: Path) -> tuple[float, float, dict[str, Any]]:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.config import CoafiConfig
    from infra.stack import CoafiStack

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    clock = Clock()
    app = cdk.App(context={**context, "coafi:definitionsDir": str(definitions)}, outdir=str(outdir))
    config = CoafiConfig.from_context(app.node)
    CoafiStack(app, config.stack_name, config=config)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    constructed = clock.read()[0]
    assembly = app.synth()
    elapsed, cpu = clock.read()
    template_file = Path(assembly.directory) / assembly.get_stack_by_name(config.stack_name).template_file
    template = json.loads(template_file.read_text())
    resources = template["Resources"]
    # Each workflow's own resources are in a nested stack (infra/workflow_stacks.py), one template each.
    nested = [json.loads(p.read_text())["Resources"] for p in Path(assembly.directory).glob("*.nested.template.json")]
    everything = [resources, *nested]
    return elapsed, cpu, {
        "construct_s": constructed, "template_bytes": template_file.stat().st_size, "resources": len(resources),
        "nested_stacks": len(nested), "all_resources": sum(len(r) for r in everything),
        "largest_nested": max((len(r) for r in nested), default=0),
        "all_template_bytes": sum(p.stat().st_size for p in Path(assembly.directory).glob("*.template.json")),
        "state_machines": sum(1 for rs in everything for r in rs.values()
                              if r["Type"] == "AWS::StepFunctions::StateMachine"),
    }


def child(workflows: int, folder: Path) -> dict[str, Any]:
    """What one subprocess measures (``workflows`` = 0: the trivial app only)."""
    sys.path.insert(0, str(REPO_ROOT))
    started = time.perf_counter()
    import aws_cdk  # noqa: F401
    import cdk_nag  # noqa: F401

    import infra.stack  # noqa: F401

    result: dict[str, Any] = {"workflows": workflows, "import_s": time.perf_counter() - started}
    result["first_trivial_s"], result["first_trivial_cpu_s"] = trivial_synth(folder / "warm-up")
    result["baseline_s"], result["baseline_cpu_s"] = trivial_synth(folder / "baseline")
    if workflows:
        write_definitions(folder / "definitions", workflows)
        try:
            result["synth_s"], result["synth_cpu_s"], result["template"] = coafi_synth(
                folder / "cdk.out", folder / "definitions")
        except RuntimeError as exc:  # the app refuses this size (e.g. CloudFormation's 500 resources): a finding
            result["error"] = str(exc).splitlines()[0][:400]
    result["peak_mib"] = peak_memory_mib()
    return result


# -- the parent -------------------------------------------------------------------------------------------
def prebuild_layer() -> None:
    """Build the shared layer once (infra/bundling.py loaded on its own, without the CDK)."""
    spec = importlib.util.spec_from_file_location("coafi_bench_bundling", REPO_ROOT / "infra" / "bundling.py")
    if spec is None or spec.loader is None:
        raise ImportError("infra/bundling.py not found")
    bundling = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bundling
    spec.loader.exec_module(bundling)
    bundling.build_shared_layer(REPO_ROOT / "functions" / "requirements.txt", REPO_ROOT / ".coafi" / "build")


def run_child(workflows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="coafi-synth-") as tmp:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(workflows), "--folder", tmp],
            capture_output=True, text=True, check=False, cwd=REPO_ROOT,
            env={**os.environ, "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
                 "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"},
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"synth of {workflows} workflow(s) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


@dataclass
class Row:
    workflows: int
    figures: dict[str, Any]

    @property
    def memory(self) -> float:
        peak = self.figures["peak_mib"]
        return float(peak["python"] + peak["node"])


def _marginal_ms(row: Row, first: Row) -> str:
    if row.workflows == first.workflows:
        return "-"
    extra = row.figures["synth_cpu_s"] - first.figures["synth_cpu_s"]
    return f"{extra / (row.workflows - first.workflows) * 1000:.0f}"


CLOUDFORMATION_MAX_RESOURCES = 500
CLOUDFORMATION_MAX_TEMPLATE_BYTES = 1_000_000  # a template in S3 (what CDK uploads); CDK warns from here
DASHBOARD_MAX_WIDGETS = 500  # infra/constructs/observability.py MAX_WIDGETS (not imported: that loads the CDK)


def _linear(small: Row, large: Row, key: str) -> tuple[float, float]:
    """(shared, per workflow) of the app's stack's ``key``, from the two largest measured sizes."""
    a, b = (r.figures["template"][key] for r in (small, large))
    per_workflow = (b - a) / (large.workflows - small.workflows)
    return a - per_workflow * small.workflows, per_workflow


def capacity(rows: list[Row]) -> list[str]:
    """How many workflows fit in one app: by the app's stack's resources, its template's size, and the
    dashboard's widgets; extrapolated linearly from the two largest measured sizes."""
    if len(rows) < 2:
        return []
    small, large = rows[-2], rows[-1]
    shared, per_workflow = _linear(small, large, "resources")
    shared_bytes, bytes_per_workflow = _linear(small, large, "template_bytes")
    limits = {
        f"resources ({shared:.0f} shared + {per_workflow:.1f} per workflow: its nested stack and its alarms; "
        f"CloudFormation's limit {CLOUDFORMATION_MAX_RESOURCES})":
            int((CLOUDFORMATION_MAX_RESOURCES - shared) // per_workflow) if per_workflow > 0 else 0,
        f"template size ({shared_bytes / 1000:.0f} KB shared + {bytes_per_workflow / 1000:.1f} KB per workflow: "
        f"its dashboard widgets, alarms and nested stack; limit {CLOUDFORMATION_MAX_TEMPLATE_BYTES / 1e6:.0f} MB)":
            int((CLOUDFORMATION_MAX_TEMPLATE_BYTES - shared_bytes) // bytes_per_workflow)
            if bytes_per_workflow > 0 else 0,
        f"dashboard widgets (5 per workflow, at most {DASHBOARD_MAX_WIDGETS})": (DASHBOARD_MAX_WIDGETS - 1) // 5,
    }
    binding = min(limits, key=lambda k: limits[k])
    lines = ["", f"workflows that fit in one app: {limits[binding]}, bound by its {binding.split(' (')[0]}"]
    lines += [f"  by {label}: {fits}" for label, fits in limits.items()]
    lines.append(f"each workflow's nested stack: {large.figures['template']['largest_nested']} resources at most")
    return lines


def report(baseline: dict[str, Any], rows: list[Row]) -> str:
    base_memory = baseline["peak_mib"]["python"] + baseline["peak_mib"]["node"]
    lines = [
        f"baseline subprocess (trivial app only): import {baseline['import_s']:.2f} s, trivial synth "
        f"{baseline['baseline_s'] * 1000:.0f} ms, CPU {baseline['baseline_cpu_s'] * 1000:.0f} ms (the first one "
        f"{baseline['first_trivial_s'] * 1000:.0f} ms, CPU {baseline['first_trivial_cpu_s'] * 1000:.0f} ms), peak "
        f"{baseline['peak_mib']['python']:.0f} MiB python + {baseline['peak_mib']['node']:.0f} MiB node",
        "",
    ]
    head = (f"{'wf':>3} {'res.':>5} {'all':>5} {'tmpl KB':>8} | {'build s':>7} {'synth s':>7} {'CPU s':>6} "
            f"{'/baseline':>9} {'/1 wf':>6} {'+ms/wf':>6} | "
            f"{'py MiB':>6} {'node MiB':>8} {'total':>6} {'/baseline':>9} {'/1 wf':>6} | {'process s':>9}")
    lines += [head, "-" * len(head)]
    measured = [row for row in rows if "error" not in row.figures]
    first = measured[0] if measured else None
    for row in rows:
        f = row.figures
        if first is None or "error" in f:
            lines.append(f"{row.workflows:>3} FAILED: {f.get('error', '?')}")
            continue
        cpu, base = f["synth_cpu_s"], f["baseline_cpu_s"]
        lines.append(
            f"{row.workflows:>3} {f['template']['resources']:>5} {f['template']['all_resources']:>5} "
            f"{f['template']['all_template_bytes'] / 1024:>8.0f} | "
            f"{f['template']['construct_s']:>7.2f} {f['synth_s']:>7.2f} {cpu:>6.2f} {cpu / base:>8.0f}x "
            f"{cpu / first.figures['synth_cpu_s']:>5.1f}x {_marginal_ms(row, first):>6} | "
            f"{f['peak_mib']['python']:>6.0f} {f['peak_mib']['node']:>8.0f} "
            f"{row.memory:>6.0f} {row.memory / base_memory:>8.2f}x {row.memory / first.memory:>5.2f}x | "
            f"{f['process_s']:>9.1f}"
        )
    lines += capacity(measured)
    lines += ["", "res.: resources of the app's stack; all: with the workflows' nested stacks (one per workflow); "
                  "tmpl KB: all templates;",
              "synth s: the COAFI app from cdk.App() to the cloud assembly, cdk-nag included, wall clock (build s: "
                  "the part before app.synth(): constructs, definitions, the layer's asset);",
              "CPU s: the same in CPU time of python + node, which other work on the machine does not inflate; the "
              "ratios and +ms/wf (each workflow beyond the first) use it;",
              "/baseline: over the trivial app's synth in the same subprocess; process s: the whole subprocess "
              "(interpreter, imports, three synths, exit)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated workflow counts")
    parser.add_argument("--repeat", type=int, default=2,
                        help="subprocesses per size; the one with the fastest synth is kept (the machine may be busy)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/synth.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.folder)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    prebuild_layer()
    repeat = max(1, args.repeat)
    baseline = min((run_child(0) for _ in range(repeat)), key=lambda f: float(f["baseline_cpu_s"]))
    rows = []
    for size in sizes:
        rows.append(Row(size, min((run_child(size) for _ in range(repeat)),
                                  key=lambda f: float(f.get("synth_cpu_s", math.inf)))))
        print(f"synthesized {size} workflow(s)", file=sys.stderr)
    print(report(baseline, rows))
    failed = [row.workflows for row in rows if "error" in row.figures]
    if not args.no_save:
        from coafi.cost import save_figures

        path = save_figures(REPO_ROOT, "synth", {"baseline": baseline, "sizes": {str(r.workflows): r.figures
                                                                                  for r in rows}})
        print(f"\nfigures written to {path.relative_to(REPO_ROOT)}")
    if failed:
        print(f"the app did not synthesize with {', '.join(map(str, failed))} workflow(s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
