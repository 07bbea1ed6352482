"""What X-Ray tracing adds to a cold start: each handler's import and first call, untraced and traced.

    .venv/bin/python bench/tracing_cold_start.py [--runs N] [--only NAME ...]

Same sandbox as ``bench/cold_start.py`` (the layer exactly as ``cdk synth`` builds it, with bytecode; the
runtime's boto3; Python 3.12 when pyenv has it; CPU time of fresh processes, best of N, interleaved), three
commands per function:

- **bare**: ``python -c pass`` with the same paths;
- **first call**: ``import handler`` plus what the first invocation loads untraced (a Powertools ``Logger``, a
  boto3 DynamoDB client);
- **traced**: the same with ``LAMBDA_TASK_ROOT`` set (in Lambda, tracing on), plus what ``coafi.telemetry.tracing``
  does on the first traced invocation: import the X-Ray SDK, make Powertools' ``Tracer`` and patch botocore.

Plus **tracer alone**: the traced command timing its tracing step from inside the process (CPU time of
``get_tracer()``), the figure for what tracing costs: the difference of two whole-process runs is swamped by noise
on a busy machine. The goal (``bench/cold_start.py``): import - bare < 150 ms; here: what tracing adds on top.
Written to ``bench/results/tracing_cold_start.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cold_start as cs  # the sibling benchmark: its sandbox and timing

TRACED = "; from coafi.telemetry.tracing import get_tracer; assert get_tracer() is not None"
#: The tracing step alone, timed inside the process (CPU time): far less noisy than a difference of two runs.
TRACER_ALONE = ("; import time; _t = time.process_time()" + TRACED +
                "; print(f'tracer_ms={(time.process_time() - _t) * 1000:.3f}')")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args(argv)
    folders = {k: v for k, v in cs.function_folders().items() if not args.only or k in args.only}
    python, python_note = cs.interpreter()
    sdk, _ = cs.runtime_sdk()
    layer = cs.shared_layer()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **cs.ENVIRONMENT}
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="coafi-trace-") as tmp:
        sandbox = cs.Sandbox.create(Path(tmp), folders, layer, sdk)
        sandbox.compile(python)
        for name in folders:
            traced_env = {**env, "LAMBDA_TASK_ROOT": str(sandbox.tasks[name])}
            first = cs.program(sandbox, name, f"; import handler; {cs.FIRST_CALL}")
            commands = {"bare": (cs.program(sandbox, name, ""), env), "import": (
                cs.program(sandbox, name, "; import handler"), env), "first_call": (first, env),
                "traced": (first + TRACED, traced_env)}
            cs.timed(python, commands["traced"][0], traced_env)  # warm the page cache
            best: dict[str, float] = {}
            for _ in range(args.runs):
                for key, (code, environment) in commands.items():
                    cpu = cs.timed(python, code, environment).cpu_ms
                    best[key] = min(best.get(key, cpu), cpu)
                alone = _tracer_ms(python, first + TRACER_ALONE, traced_env)
                best["tracer_alone"] = min(best.get("tracer_alone", alone), alone)
            rows[name] = {**best, "import_over_bare": best["import"] - best["bare"],
                          "first_call_over_bare": best["first_call"] - best["bare"],
                          "traced_over_bare": best["traced"] - best["bare"],
                          "tracing_adds": best["traced"] - best["first_call"]}
            print(f"measured {name}", file=sys.stderr)
    print(f"Tracing and cold start: {len(rows)} function(s), best of {args.runs} (CPU ms); {python_note}")
    head = (f"{'function':<28} {'bare':>5} {'import':>7} {'1st call':>9} {'traced':>7} {'difference':>11} "
            f"{'tracer alone':>13}")
    print(head)
    print("-" * len(head))
    for name, row in rows.items():
        print(f"{name:<28} {row['bare']:>5.0f} {row['import_over_bare']:>+7.0f} {row['first_call_over_bare']:>+9.0f} "
              f"{row['traced_over_bare']:>+7.0f} {row['tracing_adds']:>+11.0f} {row['tracer_alone']:>+13.1f}")
    print(f"\nover bare Python; goal for import: < {cs.GOAL_MS:.0f} ms. traced = first call with the X-Ray SDK "
          "imported, Powertools Tracer made and botocore patched (what the first traced invocation adds); "
          "difference = traced - 1st call (two noisy runs); tracer alone = that step's CPU time measured inside "
          "the process (the figure)")
    results: dict[str, Any] = {"interpreter": python_note, "runs": args.runs, "functions": rows}
    out = cs.REPO_ROOT / "bench" / "results" / "tracing_cold_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _tracer_ms(python: Path, code: str, env: dict[str, str]) -> float:
    sample = subprocess.run([str(python), "-B", "-I", "-c", code], env=env, capture_output=True, text=True,
                            check=True)
    return float(sample.stdout.strip().rsplit("tracer_ms=", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
