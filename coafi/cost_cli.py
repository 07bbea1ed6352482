"""``coafi cost FILE``: estimated AWS cost per 1,000 executions of a workflow definition (see :mod:`coafi.cost`).

Wired into the console script by ``coafi.cli.main.build_parser``::

    from coafi import cost_cli
    cost_cli.register(sub)   # sub = parser.add_subparsers(...)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coafi.definitions import DefinitionError

TRIGGERS = ("auto", "event", "command", "schedule", "manual")
#: Width of the component column (the longest: "trigger: API Lambda INIT (100% cold starts)").
COMPONENT_WIDTH = 43


def register(subparsers: Any) -> None:
    """Add the ``cost`` command to an ``argparse`` subparsers object (its handler is ``args.func``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cost",
        help="estimated AWS cost per 1,000 executions of a definition (us-east-1 list prices)",
        description="Estimated AWS cost of a workflow's successful executions: Step Functions transitions, Lambda "
        "requests and GB-seconds, DynamoDB units, EventBridge/Scheduler/SQS requests. Uses the figures in "
        "bench/results/ when the benchmarks were run, documented defaults otherwise.",
    )
    parser.add_argument("file", type=Path, help="a workflow definition (YAML or JSON)")
    parser.add_argument("--executions", type=_positive_int, default=1_000, help="executions to price (default 1000)")
    parser.add_argument("--trigger", choices=TRIGGERS, default="auto",
                        help="how executions start (default: the definition's event trigger, else its schedule; "
                        "'command': StartWorkflow commands on the app's bus)")
    parser.add_argument("--cold-start-rate", type=_rate, default=None,
                        help="share of Lambda invocations that are cold starts (default 0.01)")
    parser.add_argument("--duration-ms", type=float, default=None,
                        help="billed duration of every Lambda invocation, instead of measured figures/defaults")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of benchmark figure files (default: <project>/bench/results)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share from 0 to 1")
    return value


def run(args: argparse.Namespace) -> int:
    from coafi.cost import DEFAULT_COLD_START_RATE, Options, estimate_file

    if not args.file.is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 2
    options = Options(
        executions=args.executions,
        trigger=args.trigger,
        cold_start_rate=DEFAULT_COLD_START_RATE if args.cold_start_rate is None else args.cold_start_rate,
        duration_ms=args.duration_ms,
    )
    estimate = estimate_file(args.file, options, results_dir=args.results)
    if args.json:
        print(json.dumps(estimate.to_json(), indent=2))
    else:
        print(render(estimate))
    return 0


def render(estimate: Any) -> str:
    """The estimate as a table: one row per component, then the total and the notes."""
    usage = estimate.usage
    children = sum(usage.children.values())
    by_trigger = sum(estimate.trigger_invocations.values())
    width = COMPONENT_WIDTH
    rule = "-" * (width + 62)
    lines = [
        f"{estimate.workflow} {estimate.version}: estimated cost of {estimate.executions:,} successful executions "
        "(us-east-1, on demand, USD, no free tier)",
        f"per execution: {usage.transitions} state transitions, {sum(usage.invocations.values())} Lambda "
        f"invocations" + (f" (+{by_trigger} engine API, the {estimate.trigger} trigger's)" if by_trigger else "")
        + (f", {children} sub-workflow executions" if children else ""),
        "",
        f"{'component':<{width}} {'quantity':>14} {'unit':<12} {'price':<22} {'cost':>10}",
        rule,
    ]
    for line in estimate.lines:
        lines.append(f"{line.component:<{width}} {_quantity(line.quantity):>14} {line.unit:<12} "
                     f"{line.price_text:<22} {line.cost:>10.4f}")
    lines += [rule, f"{'total':<{width}} {'':>14} {'':<12} {'':<22} {estimate.total:>10.4f}",
              f"{'per execution':<{width}} {'':>14} {'':<12} {'':<22} {estimate.total / estimate.executions:>10.6f}",
              ""]
    lines += [f"- {note}" for note in estimate.notes]
    return "\n".join(lines)


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coafi.cost_cli FILE``: the command on its own, before it is wired into ``coafi``."""
    parser = argparse.ArgumentParser(prog="coafi")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cost", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.func(args)
    except DefinitionError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
