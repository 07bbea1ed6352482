"""The series-parallel layout as it was before the near-linear rewrite (coafi.compiler.layout): kept only as
the reference the new algorithm must match exactly (tests/unit/test_layout_equivalence.py).

It re-analysed every nesting level from scratch (components, topological order, lossless cuts), which grows
with steps x nesting depth: 3.6 s for the 5,000-step benchmark DAG.
"""

from __future__ import annotations

from collections.abc import Mapping

from coafi.compiler.layout import Node, Par, Seq
from coafi.definitions.graph import topological_order


def series_parallel(
    nodes: list[str],
    deps: Mapping[str, set[str]],
    position: Mapping[str, int],
    leaf: object,
) -> Node:
    build = leaf  # callable[[str], Node]
    assert callable(build)

    def solve(group: list[str]) -> Node:
        # Sources first, then the rest: a loop, not a recursive call per layer of sources (thousands of
        # steps would go deeper than Python's recursion limit). Usually the rest soon falls apart or can
        # be cut; when it does not, re-analysing it after every layer is quadratic, so after a few layers
        # _peel finds in one pass the layer after which it does.
        sources_first: list[Node] = []
        while True:
            node, order = split(group)
            if node is not None:
                return _flatten_seq([*sources_first, node]) if sources_first else node
            if len(sources_first) < _PEEL_ONE_BY_ONE:
                members = set(group)
                layers = [[s for s in order if not (deps[s] & members)]]
                group = [s for s in order if deps[s] & members]
            else:
                layers, group = _peel(order, deps)
            sources_first.extend(solve(sorted(layer, key=position.__getitem__)) for layer in layers)

    def split(group: list[str]) -> tuple[Node | None, list[str]]:
        """The layout of a single step, of a group that falls apart, or of one with lossless cuts; None
        (and the group's topological order) for a connected group without a cut."""
        if len(group) == 1:
            return build(group[0]), group
        components = _components(group, deps)
        if len(components) > 1:
            return Par([solve(c) for c in components]), group
        order = topological_order(group, {s: deps[s] for s in group})
        segments = _lossless_cuts(order, deps)
        if len(segments) > 1:
            return _flatten_seq([solve(seg) for seg in segments]), order
        return None, order

    return solve(sorted(nodes, key=position.__getitem__))


_PEEL_ONE_BY_ONE = 4  # layers peeled by re-analysing the rest each time, before _peel takes over


def _peel(order: list[str], deps: Mapping[str, set[str]]) -> tuple[list[list[str]], list[str]]:
    """For a connected group with no lossless cut (``order``: topological): the layers of sources that
    the loop in ``_series_parallel`` would peel one by one before the rest is a single step, falls apart
    or has a lossless cut — and that rest, in ``order``.

    The rest after k layers is the steps of depth > k (depth: steps on the longest chain within the group
    ending at the step); how many parts each rest has, and whether it has a cut, are found for all k at once.
    """
    members = set(order)
    depth: dict[str, int] = {}
    for s in order:
        depth[s] = 1 + max((depth[d] for d in deps[s] if d in members), default=0)
    layered = sorted(order, key=depth.__getitem__)  # also topological; every rest is a suffix
    start: dict[int, int] = {}
    for i, s in enumerate(layered):
        start.setdefault(depth[s], i)
    top = depth[layered[-1]]
    parts = _parts_per_rest(layered, deps, depth, top)
    cuttable = _suffixes_with_a_cut(layered, deps)
    stop = next(
        k for k in range(2, top + 1) if len(layered) - start[k] == 1 or parts[k] > 1 or cuttable[start[k]]
    )
    layers = [layered[start[k]:start[k + 1]] for k in range(1, stop)]
    return layers, [s for s in order if depth[s] >= stop]


def _parts_per_rest(
    layered: list[str], deps: Mapping[str, set[str]], depth: Mapping[str, int], top: int
) -> list[int]:
    """``parts[k]``: how many connected components the steps of depth >= k form (union-find, adding the
    layers from the deepest up; a step joins the components of its dependents, all deeper)."""
    parent = {s: s for s in layered}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    dependents: dict[str, list[str]] = {s: [] for s in layered}
    for s in layered:
        for d in deps[s]:
            if d in dependents:
                dependents[d].append(s)
    parts = [0] * (top + 1)
    count = 0
    i = len(layered)
    for k in range(top, 0, -1):
        while i > 0 and depth[layered[i - 1]] == k:
            i -= 1
            count += 1
            for t in dependents[layered[i]]:
                a, b = find(layered[i]), find(t)
                if a != b:
                    parent[a] = b
                    count -= 1
        parts[k] = count
    return parts


def _suffixes_with_a_cut(layered: list[str], deps: Mapping[str, set[str]]) -> list[bool]:
    """``result[i]``: whether ``layered[i:]`` has a lossless cut: some c > i such that every step from c on
    depends (transitively) on every step of ``layered[i:c]``. A path between two steps of a suffix stays
    in it, so ancestors within the group, restricted to the suffix, are the suffix's own."""
    n = len(layered)
    index = {s: i for i, s in enumerate(layered)}
    anc: list[int] = []
    for s in layered:
        mask = 0
        for d in deps[s]:
            if d in index:
                mask |= anc[index[d]] | (1 << index[d])
        anc.append(mask)
    common = -1  # all ones: what every step from c on depends on
    lowest = [n] * n  # lowest[c]: the smallest i such that all of layered[i:c] is in `common` at c
    for c in range(n - 1, 0, -1):
        common &= anc[c]
        lowest[c] = (~common & ((1 << c) - 1)).bit_length()
    result = [False] * n
    best = n  # the smallest lowest[c] over the c > i seen so far
    for i in range(n - 1, -1, -1):
        result[i] = best <= i
        best = min(best, lowest[i])
    return result


def _flatten_seq(parts: list[Node]) -> Node:
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Seq) else [part])
    return Seq(flat)


def _components(group: list[str], deps: Mapping[str, set[str]]) -> list[list[str]]:
    members = set(group)
    parent = {s: s for s in group}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s in group:
        for d in deps[s]:
            if d in members:
                ra, rb = find(s), find(d)
                if ra != rb:
                    parent[ra] = rb
    groups: dict[str, list[str]] = {}
    for s in group:  # group is in definition order, so components keep it too
        groups.setdefault(find(s), []).append(s)
    return list(groups.values())


def _lossless_cuts(order: list[str], deps: Mapping[str, set[str]]) -> list[list[str]]:
    """Split a topological order wherever every later step transitively depends on every earlier one."""
    index = {s: i for i, s in enumerate(order)}
    anc: list[int] = []
    for s in order:
        mask = 0
        for d in deps[s]:
            if d in index:
                mask |= anc[index[d]] | (1 << index[d])
        anc.append(mask)
    n = len(order)
    suffix_and = [0] * (n + 1)
    suffix_and[n] = -1  # all ones
    for i in range(n - 1, -1, -1):
        suffix_and[i] = suffix_and[i + 1] & anc[i]
    segments: list[list[str]] = []
    start = 0
    for cut in range(1, n):
        prefix = (1 << cut) - 1
        if prefix & ~suffix_and[cut] == 0:
            segments.append(order[start:cut])
            start = cut
    segments.append(order[start:])
    return segments
