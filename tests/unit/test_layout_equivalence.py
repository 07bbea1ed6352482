"""The near-linear layout (coafi.compiler.layout) lays out every graph exactly as the algorithm it replaced
(tests/unit/layout_reference.py): same nesting, same order of branches and parts, on random DAGs of many
shapes, with decisions, in shuffled definition orders."""

from __future__ import annotations

import random
from typing import Any

import pytest

from coafi.compiler import compile_workflow
from coafi.compiler import layout as layout_module
from coafi.compiler.layout import Node
from tests.unit.layout_reference import series_parallel as reference
from tests.unit.test_compiler import define, random_dag, random_decision_workflow, series_parallel, task


def both_layouts(steps: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[Node, Node]:
    definition = define(*steps)
    new = compile_workflow(definition, enforce_size_limit=False).layout
    with monkeypatch.context() as patch:
        patch.setattr(layout_module, "_series_parallel", reference)
        old = compile_workflow(definition, enforce_size_limit=False).layout
    return new, old


def windowed_dag(rng: random.Random, size: int, window: int, far: float) -> list[dict[str, Any]]:
    """Like bench/compile.py: each step depends on 0-3 of the ``window`` steps before it, now and then on one
    far earlier; definition order shuffled or not."""
    steps = []
    for i in range(size):
        near = list(range(max(0, i - window), i))
        deps = set(rng.sample(near, k=min(len(near), rng.choice((0, 1, 1, 2, 2, 3)))))
        if i > window and rng.random() < far:
            deps.add(rng.randrange(0, i - window))
        steps.append(task(f"s{i}", *(f"s{d}" for d in sorted(deps))))
    if rng.random() < 0.5:
        rng.shuffle(steps)
    return steps


def layered_dag(rng: random.Random, layers: int, width: int, density: float) -> list[dict[str, Any]]:
    """Layers of steps, each depending on some of the previous layer (sometimes on all of it: lossless
    cuts), with a few long edges and joins: many cuts, peels and splits nested in each other."""
    steps: list[dict[str, Any]] = []
    previous: list[str] = []
    earlier: list[str] = []
    for layer in range(layers):
        current = [f"l{layer}w{i}" for i in range(rng.randint(1, width))]
        full = rng.random() < 0.25
        for step in current:
            deps = set(previous if full else [p for p in previous if rng.random() < density])
            if earlier and rng.random() < 0.1:
                deps.add(rng.choice(earlier))
            steps.append(task(step, *sorted(deps)))
        earlier += previous
        previous = current
    rng.shuffle(steps)
    return steps


@pytest.mark.parametrize("seed", range(60))
def test_random_dags_are_laid_out_as_before(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    density = rng.choice((0.02, 0.05, 0.1, 0.25, 0.5, 0.9))
    new, old = both_layouts(random_dag(rng, rng.randint(2, 80), density), monkeypatch)
    assert new == old


@pytest.mark.parametrize("seed", range(40))
def test_windowed_and_layered_dags_are_laid_out_as_before(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(10_000 + seed)
    steps = (windowed_dag(rng, rng.randint(20, 400), rng.choice((3, 8, 30)), rng.choice((0.0, 0.05, 0.3)))
             if seed % 2 else layered_dag(rng, rng.randint(2, 60), rng.randint(1, 6), rng.choice((0.3, 0.6, 0.9))))
    new, old = both_layouts(steps, monkeypatch)
    assert new == old


@pytest.mark.parametrize("seed", range(40))
def test_decision_workflows_are_laid_out_as_before(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    new, old = both_layouts(random_decision_workflow(rng, rng.randint(4, 60)), monkeypatch)
    assert new == old


@pytest.mark.parametrize("seed", range(20))
def test_series_parallel_graphs_are_laid_out_as_before(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    new, old = both_layouts(series_parallel(rng, rng.randint(2, 60), iter(range(10_000))), monkeypatch)
    assert new == old


def test_long_peels_and_large_graphs_are_laid_out_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved chains (hundreds of layers peeled in a row: the old algorithm's fast path) and a
    1,500-step windowed DAG (hundreds of nested levels)."""
    steps = []
    for i in range(300):
        steps.append(task(f"x{i}", *([f"x{i - 1}"] if i else [])))
        steps.append(task(f"y{i}", *([f"y{i - 1}", f"x{i - 1}"] if i else [])))
    new, old = both_layouts(steps, monkeypatch)
    assert new == old
    new, old = both_layouts(windowed_dag(random.Random(1500), 1500, 30, 0.05), monkeypatch)
    assert new == old
