"""Errors a user can cause with a definition: every problem names the file, the step and the field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a definition.

    ``path`` is the field inside the document, e.g. ``steps[2].retryPolicy.backoffRate``;
    ``step`` is the id of the step it belongs to, when there is one.
    """

    file: str
    path: str
    message: str
    step: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.step:
            where += f": step '{self.step}'"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"


class DefinitionError(Exception):
    """Raised with every problem found in one or more definitions, never just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.path, p.message))
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])
