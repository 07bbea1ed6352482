"""Every benchmark, one after the other, each in its own process: what ``make bench`` runs.

    .venv/bin/python bench/run_all.py [--quick] [--with-local] [--only NAME ...]

Order: compile, synth, cold_start, state_writes, then any other ``bench/*.py`` (e.g. the rule engine's), then
the cost estimate of every shipped workflow from the figures just written. ``local_e2e`` and ``local_load`` start
and deploy to the embedded LocalStack (port 4566), so they only run with ``--with-local``. ``--quick`` passes small
sizes (a smoke run, not figures to record). Each script prints its own figures, ratios against its own baseline
included; the exit status is non-zero if any script failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
ORDER = ("compile", "synth", "cold_start", "state_writes")
NEEDS_LOCALSTACK = ("local_e2e", "local_load")
NOT_BENCHMARKS = ("run_all",)
QUICK_ARGS: dict[str, list[str]] = {
    "compile": ["--sizes", "10,100", "--repeat", "1"],
    "synth": ["--sizes", "1", "--repeat", "1", "--no-save"],
    "cold_start": ["--runs", "1", "--only", "state", "--no-bytecode-variant", "--no-save"],
    "state_writes": ["--executions", "1", "--no-save"],
    "local_e2e": ["--runs", "1", "--concurrent", "5", "--no-save"],
    "local_load": ["--executions", "5", "--at-once", "5", "--in-flight", "2", "--no-save"],
}


def scripts(with_local: bool, only: list[str]) -> list[str]:
    """Benchmark names in the order they run."""
    found = sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))
    names = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER and n not in NOT_BENCHMARKS
                                                 and n not in NEEDS_LOCALSTACK]
    if with_local:
        names += [n for n in NEEDS_LOCALSTACK if n in found]
    return [n for n in names if not only or n in only]


def run(name: str, quick: bool) -> tuple[int, float]:
    arguments = QUICK_ARGS.get(name, []) if quick else []
    banner = f" {name} " + (" ".join(arguments) + " " if arguments else "")
    print(f"\n{banner:=^100}", flush=True)
    started = time.perf_counter()
    code = subprocess.run([sys.executable, str(BENCH_DIR / f"{name}.py"), *arguments], cwd=REPO_ROOT,
                          check=False).returncode
    return code, time.perf_counter() - started


def cost_of_shipped_workflows() -> int:
    """``coafi cost`` of every shipped definition, with the figures the benchmarks just wrote."""
    failed = 0
    for definition in sorted((REPO_ROOT / "statemachines").glob("*.y*ml")):
        print(f"\n{' cost ' + definition.name + ' ':=^100}", flush=True)
        command = [sys.executable, "-m", "coafi.cost_cli", str(definition.relative_to(REPO_ROOT))]
        failed += subprocess.run(command, cwd=REPO_ROOT, check=False).returncode != 0
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the scripts run, not figures")
    parser.add_argument("--with-local", action="store_true",
                        help="also run local_e2e and local_load (start LocalStack)")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost estimates at the end")
    args = parser.parse_args(argv)
    results: dict[str, tuple[int, float]] = {}
    for name in scripts(args.with_local, args.only):
        results[name] = run(name, args.quick)
    cost_failures = 0 if args.no_cost or args.only else cost_of_shipped_workflows()
    print(f"\n{' summary ':=^100}")
    for name, (code, seconds) in results.items():
        print(f"{name:<16} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {seconds:7.1f} s")
    if not args.with_local:
        for name in NEEDS_LOCALSTACK:
            print(f"{name:<16} {'skipped':<18} (needs LocalStack on port 4566: --with-local)")
    failed = sum(1 for code, _ in results.values() if code != 0) + cost_failures
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
