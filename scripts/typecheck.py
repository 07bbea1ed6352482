"""mypy over the project: the package, infra and tests in one run, then each Lambda handler on its own
(every function folder holds a module named ``handler``, which mypy cannot check in a single run)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    failed = False
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    runs: list[list[str]] = [[f for f in config["files"] if (ROOT / f).exists()]]
    handlers = sorted(ROOT.glob("functions/**/handler.py")) + sorted(
        ROOT.glob("tests/fixtures/project/functions/**/handler.py"))
    runs += [[str(h.relative_to(ROOT))] for h in handlers]
    for args in runs:
        stdout, stderr, status = api.run(args)
        if status != 0:
            failed = True
            sys.stdout.write(stdout)
            sys.stderr.write(stderr)
    print(f"mypy: {len(runs)} runs, {'FAILED' if failed else 'clean'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
