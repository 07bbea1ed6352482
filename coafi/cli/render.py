"""Plain-text rendering for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from coafi.state.models import StepRecord


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def timeline_table(steps: Sequence[StepRecord]) -> str:
    """step | status | start | duration | attempts, one row per step record."""
    rows = [("STEP", "STATUS", "START (UTC)", "DURATION", "ATTEMPTS")]
    for s in steps:
        rows.append((s.stepId, s.status, _time(s.startedAt), _duration(s.durationMs),
                     str(s.attempts) if s.attempts else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for s in steps:
        if s.error:
            lines.append(f"  {s.stepId}: {s.error.type}: {s.error.message}")
    return "\n".join(lines)
