"""Dependency-graph facts shared by the loader (validation) and the compiler (layout)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every dependency cycle, one per strongly connected component, as ``[a, b, ..., a]``.

    Only edges to known ids count (unknown dependencies are reported elsewhere); self-loops too.
    Iterative Tarjan so a 5,000-step chain does not hit the recursion limit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in deps:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_i = work.pop()
            if child_i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = [d for d in deps.get(node, ()) if d in deps]
            if child_i < len(children):
                work.append((node, child_i + 1))
                child = children[child_i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in deps.get(node, ()):
                    components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return [_cycle_in(component, deps) for component in components]


def _cycle_in(component: list[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """A concrete cycle through the component, starting at its first node in definition order."""
    members = set(component)
    order = [n for n in deps if n in members]
    start = order[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(d for d in deps[node] if d in members)
        for d in deps[node]:
            if d == start:
                nxt = d
                break
        if nxt in seen:
            return [*path[path.index(nxt):], nxt]
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def topological_order(nodes: Iterable[str], deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Kahn's algorithm, stable in the given node order; ``deps`` restricted to ``nodes``."""
    node_list = list(nodes)
    members = set(node_list)
    position = {n: i for i, n in enumerate(node_list)}
    indegree = {n: 0 for n in node_list}
    dependents: dict[str, list[str]] = {n: [] for n in node_list}
    for n in node_list:
        for d in set(deps.get(n, ())):
            if d in members and d != n:
                indegree[n] += 1
                dependents[d].append(n)
    import heapq

    ready = [(position[n], n) for n in node_list if indegree[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for m in dependents[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(ready, (position[m], m))
    if len(order) != len(node_list):
        raise ValueError("dependency cycle")
    return order


def ancestors(deps: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Transitive dependencies of every node (acyclic graphs only)."""
    result: dict[str, set[str]] = {}
    for n in topological_order(list(deps), deps):
        acc: set[str] = set()
        for d in deps[n]:
            if d in deps:
                acc.add(d)
                acc |= result[d]
        result[n] = acc
    return result


def longest_chain(deps: Mapping[str, Iterable[str]]) -> int:
    """Number of steps on the longest dependency chain."""
    depth: dict[str, int] = {}
    for n in topological_order(list(deps), deps):
        depth[n] = 1 + max((depth[d] for d in deps[n] if d in depth), default=0)
    return max(depth.values(), default=0)
