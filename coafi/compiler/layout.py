"""Lay a step dependency graph out as nested sequences and parallel blocks (what ASL can express).

Step Functions has no "start when these finish" primitive, only sequences, ``Parallel`` fork/joins and
``Choice``. The layout below keeps every dependency and adds as little waiting as possible:

* disconnected parts of the graph become branches of one ``Parallel``;
* a connected part is cut into a sequence wherever *every* step after the cut depends on *every* step
  before it (such a cut adds no waiting at all; series-parallel graphs are laid out exactly);
* a connected part with no such cut (e.g. the "N" shape a->c, b->c, b->d) starts with its sources in
  parallel and continues with the rest. That may make a step wait for a step it does not need, but never
  lengthens the run beyond the longest dependency chain when steps take equal time.

A decision step and the steps on its branches form one node (a ``Region``) at the level that holds the
decision; each branch is laid out on its own, recursively.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from coafi.definitions.branches import DecisionLayout, innermost_owner
from coafi.definitions.graph import topological_order


@dataclass
class Leaf:
    step: str


@dataclass
class Seq:
    parts: list[Node]


@dataclass
class Par:
    branches: list[Node]


@dataclass
class Region:
    decision: str
    branches: list[Node | None] = field(default_factory=list)


Node = Leaf | Seq | Par | Region


def lay_out(
    order: Sequence[str], deps: Mapping[str, Sequence[str]], decisions: Mapping[str, DecisionLayout]
) -> Node:
    """The layout of a whole workflow. ``order`` is the definition order of the step ids."""
    owner = innermost_owner(decisions)
    position = {s: i for i, s in enumerate(order)}
    members: dict[tuple[str, int] | None, list[str]] = {}
    for s in order:
        members.setdefault(owner.get(s), []).append(s)

    def representative(step: str, context: tuple[str, int] | None) -> str | None:
        """The node standing for ``step`` among the members of ``context`` (None: outside, already done)."""
        current: str | None = step
        while current is not None:
            own = owner.get(current)
            if own == context:
                return current
            current = own[0] if own is not None else None
        return None

    def level(context: tuple[str, int] | None) -> Node | None:
        nodes = members.get(context, [])
        if not nodes:
            return None
        level_deps: dict[str, set[str]] = {}
        for s in nodes:
            reps = {representative(d, context) for d in deps[s]}
            level_deps[s] = {r for r in reps if r is not None and r != s}
        return _series_parallel(nodes, level_deps, position, build_leaf)

    def build_leaf(step: str) -> Node:
        if step in decisions:
            return Region(step, [level((step, i)) for i in range(len(decisions[step].branches))])
        return Leaf(step)

    root = level(None)
    assert root is not None, "a workflow has at least one step"
    return root


def _series_parallel(
    nodes: list[str],
    deps: Mapping[str, set[str]],
    position: Mapping[str, int],
    leaf: object,
) -> Node:
    """The layout of one level (``deps``: within ``nodes``). What it computes, group by group, starting with
    all of ``nodes``:

    * a single step is a leaf;
    * a group that falls apart is a ``Par`` of its connected parts (in order of their first step);
    * a connected group with lossless cuts is a ``Seq`` of the parts between the cuts;
    * any other group starts with its sources (one ``Par``), then the rest, which is laid out the same way
      until it is a single step, falls apart or has a cut (no re-analysis of the sources' layer).

    Done literally, each nesting level re-analyses almost the whole graph (steps x depth: 3.6 s for 5,000
    steps). Here every question is answered from structures built once per part, using that every group is
    a depth band (``depth``: steps on the longest chain ending at a step, over the whole level) of a connected
    part: peeling a group's sources removes its lowest layer, and a lossless cut is always between two layers
    (``_CutFinder``). The connected parts of every band with a given upper bound come from one union-find
    pass from the deepest layer up (``_Part``: a part of the band from its lowest layer up, its children the
    parts of the band one layer higher). When a group falls apart, the largest part keeps the cut finder and
    the others get their own, so each step is re-counted at most log2(steps) times.
    """
    build = leaf  # callable[[str], Node]
    assert callable(build)
    return _Layout(nodes, deps, position, build).root()


class _Part:
    """A connected part of the band ``[lo, top]`` of depths, ``lo`` its lowest layer: ``sources``, the
    steps at depth ``lo``; ``children``, the connected parts of the rest (``lo`` + 1 to ``top``)."""

    __slots__ = ("children", "first", "first_position", "hi", "lo", "size", "sources")
    size: int
    hi: int
    first: int
    first_position: int

    def __init__(self, sources: list[int], children: list[_Part], lo: int, position: list[int]) -> None:
        self.sources = sources
        self.children = children
        self.lo = lo
        self.size = len(sources) + sum(c.size for c in children)
        self.hi = max([lo, *(c.hi for c in children)])
        self.first = min([*sources, *(c.first for c in children)])  # topological index of its first step
        self.first_position = min([*(position[s] for s in sources), *(c.first_position for c in children)])

    def steps(self, below: int | None = None) -> list[int]:
        """Its steps (those of depth <= ``below`` when given)."""
        out: list[int] = []
        stack = [self]
        while stack:
            part = stack.pop()
            if below is not None and part.lo > below:
                continue
            out.extend(part.sources)
            stack.extend(part.children)
        return out


class _Layout:
    """One level's graph with steps numbered in the topological order ``_series_parallel`` used to follow
    (Kahn's algorithm, ties broken by definition order)."""

    def __init__(
        self,
        nodes: list[str],
        deps: Mapping[str, set[str]],
        position: Mapping[str, int],
        build: Callable[[str], Node],
    ) -> None:
        self.order = topological_order(sorted(nodes, key=position.__getitem__), deps)
        index = {s: i for i, s in enumerate(self.order)}
        self.build = build
        self.position = [position[s] for s in self.order]
        self.deps = [[index[d] for d in deps[s]] for s in self.order]
        self.dependents: list[list[int]] = [[] for _ in self.order]
        self.depth = [0] * len(self.order)
        for i, ds in enumerate(self.deps):
            self.depth[i] = 1 + max((self.depth[d] for d in ds), default=0)
            for d in ds:
                self.dependents[d].append(i)
        self.owner: list[_CutFinder | None] = [None] * len(self.order)
        self.parent = list(range(len(self.order)))  # union-find, reused by every _parts call
        self.mark = [0] * len(self.order)
        self.stamp = 0

    def root(self) -> Node:
        everything = list(range(len(self.order)))
        return self.group(self.parts(everything), _CutFinder(self, everything), root=True)

    # -- connected parts -------------------------------------------------------------------------
    def parts(self, steps: list[int]) -> list[_Part]:
        """The connected parts of ``steps`` (a band of a connected part), with their nested parts."""
        self.stamp += 1
        stamp, mark, parent, depth = self.stamp, self.mark, self.parent, self.depth
        by_depth: dict[int, list[int]] = {}
        for s in steps:
            mark[s] = stamp
            by_depth.setdefault(depth[s], []).append(s)

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        current: dict[int, _Part] = {}  # union-find root -> the part it stands for
        for d in sorted(by_depth, reverse=True):
            layer = by_depth[d]
            for v in layer:
                parent[v] = v
            below = [[find(y) for y in self.dependents[v] if mark[y] == stamp] for v in layer]
            for v, roots in zip(layer, below, strict=True):
                for r in roots:
                    a, b = find(v), find(r)
                    if a != b:
                        parent[a] = b
            grouped: dict[int, tuple[list[int], list[_Part]]] = {}
            for v, roots in zip(layer, below, strict=True):
                sources, children = grouped.setdefault(find(v), ([], []))
                sources.append(v)
                for r in roots:
                    child = current.pop(r, None)
                    if child is not None:
                        children.append(child)
            for r, (sources, children) in grouped.items():
                current[r] = _Part(sources, children, d, self.position)
        return list(current.values())

    # -- layout ----------------------------------------------------------------------------------
    def leaf(self, step: int) -> Node:
        return self.build(self.order[step])

    def group(self, parts: list[_Part], finder: _CutFinder, *, root: bool = False) -> Node:
        """The layout of a group made of ``parts`` (``finder``: counts of exactly these steps)."""
        if len(parts) == 1:
            return self.connected(parts[0], finder)
        parts = sorted(parts, key=(lambda p: p.first_position) if root else (lambda p: p.first))
        largest = max(parts, key=lambda p: p.size)
        finders = {}
        for part in parts:
            if part is not largest:
                steps = part.steps()
                finder.remove(steps)
                finders[id(part)] = _CutFinder(self, steps)
        return Par([self.connected(p, finders.get(id(p), finder)) for p in parts])

    def connected(self, part: _Part, finder: _CutFinder) -> Node:
        sources_first: list[Node] = []
        while True:
            if part.size == 1:
                node = self.leaf(part.sources[0])
                break
            cuts = finder.cuts(part.lo, part.hi)
            if cuts:
                node = self.segments(part, cuts, finder)
                break
            layer = sorted(part.sources, key=self.position.__getitem__)
            sources_first.append(self.leaf(layer[0]) if len(layer) == 1 else Par([self.leaf(s) for s in layer]))
            finder.remove(part.sources)
            if len(part.children) > 1:
                node = self.group(part.children, finder)
                break
            part = part.children[0]
        return _flatten_seq([*sources_first, node]) if sources_first else node

    def segments(self, part: _Part, cuts: list[int], finder: _CutFinder) -> Node:
        """A connected part cut after the layers ``cuts``: the segments below the last cut get parts and
        counts of their own; the top one is made of the nested parts above the last cut and keeps ``finder``."""
        last = cuts[-1]
        below = part.steps(below=last)
        top: list[_Part] = []
        stack = [part]
        while stack:
            p = stack.pop()
            for child in p.children:
                (top if child.lo > last else stack).append(child)
        finder.remove(below)
        bounds = [part.lo - 1, *cuts]
        lower: list[list[int]] = [[] for _ in cuts]
        for s in below:
            lower[bisect_left(bounds, self.depth[s]) - 1].append(s)
        laid = [self.group(self.parts(steps), _CutFinder(self, steps)) for steps in lower]
        laid.append(self.group(top, finder))
        return _flatten_seq(laid)


class _CutFinder:
    """Where a connected group (a depth band of the steps counted here) has lossless cuts.

    With ``P`` the steps of depth <= h and ``S`` the deeper ones, every step of ``S`` depends on every step
    of ``P`` exactly when (1) no step of ``P`` is a sink of the group, (2) every step of ``P`` has a dependent
    of depth <= h + 1 and (3) the steps of ``P`` with no dependent in ``P`` (those whose nearest dependent,
    ``near``, is at depth h + 1) are direct dependencies of every step at depth h + 1. Per h this keeps how
    many steps violate (2) (a step spans the heights from its depth to ``near`` - 2: a Fenwick tree of range
    additions), ``tight[h]`` (steps whose ``near`` is h + 1), ``layer[h]`` (steps at depth h + 1) and
    ``edges[h]`` (dependencies between those two): (3) is ``tight * layer == edges``.

    Only removing steps changes the counts (a removed step is never a dependent of a step still counted),
    so a height is tested again only when one of its own counts changed (``dirty``) or when it met (3) when
    last tested (``ready``) and a span or sink that blocked it went away.
    """

    def __init__(self, layout: _Layout, steps: list[int]) -> None:
        self.layout = layout
        depth, owner, dependents = layout.depth, layout.owner, layout.dependents
        for s in steps:
            owner[s] = self
        self.lo = min(depth[s] for s in steps)
        self.hi = max(depth[s] for s in steps)
        self.base = base = self.lo - 1  # heights h from lo - 1 to hi - 1 are at index h - base
        size = self.hi - base
        self.tight, self.layer, self.edges = [0] * size, [0] * size, [0] * size
        spans = [0] * size  # how many steps span each height, as differences
        self.near: dict[int, int] = {}
        self.sinks: list[int] = []
        self.sink_count: dict[int, int] = {}
        for s in steps:
            d = depth[s]
            self.layer[d - 1 - base] += 1
            near = min((depth[y] for y in dependents[s] if owner[y] is self), default=0)
            self.near[s] = near
            if not near:
                self.sinks.append(d)
                self.sink_count[d] = self.sink_count.get(d, 0) + 1
                continue
            self.tight[near - 1 - base] += 1
            self.edges[near - 1 - base] += sum(1 for y in dependents[s] if owner[y] is self and depth[y] == near)
            if d < near - 1:
                spans[d - base] += 1
                spans[near - 1 - base] -= 1
        self.spans = tree = [0] * (size + 1)  # Fenwick tree over the differences, index h - base + 1
        for i in range(1, size + 1):
            tree[i] += spans[i - 1]
            parent = i + (i & -i)
            if parent <= size:
                tree[parent] += tree[i]
        heapq.heapify(self.sinks)
        self.dirty: set[int] = set(range(self.lo, self.hi))
        self.ready: set[int] = set()

    def _span_add(self, h: int, value: int) -> None:
        i = h - self.base + 1
        tree = self.spans
        while i < len(tree):
            tree[i] += value
            i += i & -i

    def _spanned(self, h: int) -> int:
        i, total, tree = h - self.base + 1, 0, self.spans
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def _unblocked(self, first: int, last: int) -> None:
        """Heights first..last lost a span or a sink below them: those that met (3) are worth a test."""
        if last - first + 1 <= len(self.ready):
            self.dirty.update(h for h in range(first, last + 1) if h in self.ready)
        else:
            self.dirty.update(h for h in self.ready if first <= h <= last)

    def lowest_sink(self) -> int:
        while self.sinks and not self.sink_count[self.sinks[0]]:
            heapq.heappop(self.sinks)
        return self.sinks[0] if self.sinks else self.hi + 1

    def remove(self, steps: list[int]) -> None:
        layout, base, dirty = self.layout, self.base, self.dirty
        depth, owner, near_of = layout.depth, layout.owner, self.near
        for s in steps:
            d, near = depth[s], near_of[s]
            self.layer[d - 1 - base] -= 1
            dirty.add(d - 1)
            for w in layout.deps[s]:
                if owner[w] is self and near_of[w] == d:
                    self.edges[d - 1 - base] -= 1
            if near:
                self.tight[near - 1 - base] -= 1
                dirty.add(near - 1)
                for y in layout.dependents[s]:
                    if owner[y] is self and depth[y] == near:
                        self.edges[near - 1 - base] -= 1
                if d < near - 1:
                    self._span_add(d, -1)
                    self._span_add(near - 1, 1)
                    self._unblocked(d, near - 2)
            else:
                lowest = self.lowest_sink()
                self.sink_count[d] -= 1
                self._unblocked(lowest, min(self.lowest_sink(), self.hi) - 1)
            owner[s] = None

    def cuts(self, lo: int, hi: int) -> list[int]:
        """The heights h (lo <= h < hi) after which the group of the steps counted here, depths lo to hi,
        has a lossless cut."""
        lowest, base, found = self.lowest_sink(), self.base, []
        for h in self.dirty:
            if lo <= h < hi:
                if self.tight[h - base] * self.layer[h - base] != self.edges[h - base]:
                    self.ready.discard(h)
                    continue
                self.ready.add(h)
                if h < lowest and not self._spanned(h):
                    found.append(h)
        self.dirty.clear()
        return sorted(found)


def _flatten_seq(parts: list[Node]) -> Node:
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Seq) else [part])
    return Seq(flat)


def critical_path(node: Node | None, duration: Mapping[str, float] | None = None) -> float:
    """How long the layout takes when each step takes ``duration[step]`` (default 1): the
    figure the "as many step-times as the longest chain" promise is checked against."""
    if node is None:
        return 0.0
    if isinstance(node, Leaf):
        return duration.get(node.step, 1.0) if duration else 1.0
    if isinstance(node, Seq):
        return sum(critical_path(p, duration) for p in node.parts)
    if isinstance(node, Par):
        return max(critical_path(b, duration) for b in node.branches)
    own = duration.get(node.decision, 1.0) if duration else 1.0
    return own + max((critical_path(b, duration) for b in node.branches), default=0.0)
