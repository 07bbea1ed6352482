"""How loading, validating and compiling scale with the number of steps.

    .venv/bin/python bench/compile.py [--repeat N] [--sizes 10,100,1000,5000]

Random DAG definitions (seeded, so every run measures the same graphs) of each size are written as YAML,
then timed: parse (YAML -> data), validate (data -> model, every check), compile (model -> ASL), and, as a
baseline measured in the same process, ``json.dumps`` of the produced ASL. Each figure is the best of N
runs in CPU time (``time.process_time``). A linear algorithm grows by the size ratio between rows (10x from 100 to
1,000 steps); the "growth" columns show the measured ratio next to it. No assertions: this informs, the
unit tests judge.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coafi.compiler import compile_workflow
from coafi.definitions import WorkflowDefinition, load_definition, validate_definition
from coafi.definitions.graph import longest_chain

SIZES = (10, 100, 1_000, 5_000)


def random_definition(size: int, seed: int) -> dict[str, Any]:
    """A workflow of ``size`` task steps. Each step depends on 0-3 of the 30 steps before it, and now and
    then on one far earlier: long chains, wide fans and joins, like a large generated pipeline."""
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []
    for i in range(size):
        window = list(range(max(0, i - 30), i))
        deps = rng.sample(window, k=min(len(window), rng.choice((0, 1, 1, 2, 2, 3))))
        if i > 30 and rng.random() < 0.05:
            deps.append(rng.randrange(0, i - 30))
        steps.append({"id": f"step{i}", "action": "echo", "dependencies": [f"step{d}" for d in sorted(set(deps))]})
    return {"id": f"bench-{size}", "name": f"Benchmark {size}", "version": "1", "steps": steps}


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The least CPU time (``time.process_time``) of ``repeat`` runs: other work on a shared machine inflates wall
    time, far less this process's own CPU time."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = run()
        best = min(best, time.process_time() - start)
    return best, result


@dataclass
class Row:
    size: int
    chain: int
    parse: float
    validate: float
    load: float
    compile: float
    dumps: float
    asl_bytes: int


def measure(size: int, repeat: int, folder: Path) -> Row:
    data = random_definition(size, seed=size)
    path = folder / f"bench-{size}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    parse, _ = best_of(repeat, lambda: yaml.safe_load(path.read_text(encoding="utf-8")))
    validate, definition = best_of(repeat, lambda: validate_definition(data, str(path), actions={"echo"}))
    load, _ = best_of(repeat, lambda: load_definition(path, actions={"echo"}))
    assert isinstance(definition, WorkflowDefinition)
    compile_time, compiled = best_of(repeat, lambda: compile_workflow(definition, enforce_size_limit=False))
    dumps, _ = best_of(repeat, lambda: json.dumps(compiled.asl))
    chain = longest_chain({s.id: s.dependencies for s in definition.steps})
    asl_bytes = len(json.dumps(compiled.asl, separators=(",", ":")))
    return Row(size, chain, parse, validate, load, compile_time, dumps, asl_bytes)


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def report(rows: list[Row]) -> str:
    head = (f"{'steps':>6} {'chain':>6} | {'parse ms':>9} {'valid. ms':>9} {'load ms':>9} | {'compile ms':>10} "
            f"{'us/step':>8} | {'growth: load':>12} {'compile':>8} {'linear':>7} | {'compile/json.dumps':>18} "
            f"{'ASL KiB':>8}")
    lines = [head, "-" * len(head)]
    previous: Row | None = None
    for row in rows:
        growth = "", "", ""
        if previous is not None:
            growth = (f"{row.load / previous.load:11.1f}x", f"{row.compile / previous.compile:7.1f}x",
                      f"{row.size / previous.size:6.1f}x")
        lines.append(
            f"{row.size:>6} {row.chain:>6} | {milliseconds(row.parse)} {milliseconds(row.validate)} "
            f"{milliseconds(row.load)} | {row.compile * 1000:10.1f} {row.compile / row.size * 1e6:8.1f} | "
            f"{growth[0]:>12} {growth[1]:>8} {growth[2]:>7} | {row.compile / row.dumps:17.1f}x "
            f"{row.asl_bytes / 1024:8.0f}"
        )
        previous = row
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # The layout of a random DAG nests Parallel in sequence in Parallel... about one level per seven steps
    # (700 at 5,000 steps); the compiler and json.dumps recurse once or more per level.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated step counts")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            rows.append(measure(size, args.repeat if size < 5_000 else max(1, args.repeat - 1), Path(folder)))
            print(f"measured {size} steps", file=sys.stderr)
    print(report(rows))
    print("\nload = parse + validate (YAML file to model); chain = steps on the longest dependency chain;"
          "\ngrowth = time at this size / time at the previous size; linear = the size ratio;"
          "\nASL KiB = compact JSON of the compiled machine (Step Functions accepts at most 1,024 KiB).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
