"""SVG pictures of workflow definitions, in pure Python (no browser, no Graphviz), for docs and reviews.

A layered ("Sugiyama") drawing, top to bottom:

1. layers: a step's layer is the length of the longest dependency chain leading to it; a start terminal sits
   above the first layer, a ``done`` terminal below the last;
2. an edge spanning several layers passes through a virtual point in each layer between, so it is routed
   around the boxes instead of through them;
3. order within a layer: barycentre sweeps (down, up, ...) to reduce crossings, ties kept in definition order;
4. x positions: each node pulled towards the mean of its neighbours in the previous layer (then the next),
   with order and spacing kept (isotonic regression, so the pull is shared fairly);
5. shapes by type: task rectangle, wait rounded, decision diamond, subworkflow double border; decision edges
   carry a short form of their condition (``default`` for the default branch).

The output depends only on the definition: the same definition gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from coafi.compiler.rules import rule_text, rules_step_text
from coafi.definitions.branches import branch_labels
from coafi.definitions.graph import topological_order
from coafi.definitions.models import (
    AllCondition,
    AnyCondition,
    Condition,
    FactCondition,
    NotCondition,
    WorkflowDefinition,
    WorkflowStep,
)

FONT = "Helvetica, Arial, sans-serif"
NAME_SIZE = 13
DETAIL_SIZE = 11
LABEL_SIZE = 11
PADDING_X = 14
MIN_WIDTH = 120
BOX_HEIGHT = 44
TERMINAL_HEIGHT = 30
DIAMOND_HEIGHT = 60
LAYER_GAP = 56
NODE_GAP = 36
VIRTUAL_WIDTH = 14
MARGIN = 24
MAX_TEXT = 36
MAX_EDGE_LABEL = 30
SWEEPS = 4
#: Beyond this many routing points (one per layer an edge crosses), implied dependencies are not drawn.
MAX_VIRTUAL_POINTS = 20_000
STYLE = {
    # type: (fill, stroke)
    "task": ("#e8f0fe", "#3b6fd8"),
    "wait": ("#fff4e0", "#c98500"),
    "decision": ("#fdecea", "#c0392b"),
    "subworkflow": ("#e6f4ea", "#2e7d4f"),
    "callback": ("#f3e8fd", "#8e44ad"),
    "signal": ("#f3e8fd", "#8e44ad"),
    "schedule": ("#f3e8fd", "#7b3fc4"),
    "rules": ("#f3e8fd", "#7b3fb8"),
    "terminal": ("#f1f3f4", "#5f6368"),
}
_OPERATORS = {
    "equal": "=", "notEqual": "≠", "lessThan": "<", "lessThanInclusive": "≤", "greaterThan": ">",
    "greaterThanInclusive": "≥",
}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NARROW = set("fijlrt.,:;!|'()[] ")
_WIDE = set("mwMW@%")

START = "\x00start"
FINISH = "\x00finish"


@dataclass
class _Node:
    key: str
    layer: int
    width: float
    height: float
    kind: str  # task, wait, decision, subworkflow, terminal, virtual
    name: str = ""
    detail: str = ""
    tooltip: str = ""
    x: float = 0.0  # centre
    y: float = 0.0  # top


@dataclass
class _Edge:
    source: str
    target: str
    label: str = ""
    label_tooltip: str = ""
    points: list[str] = field(default_factory=list)  # node keys, virtual ones included


def svg(definition: WorkflowDefinition) -> str:
    """The picture of ``definition`` as an SVG document (UTF-8 text, ends with a newline)."""
    return _Drawing(definition).render()


# -- text -------------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _shorten(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(_clean(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """A generous estimate of the rendered width of ``text`` in a sans-serif font of ``size`` px (DejaVu Sans,
    the widest common fallback, included)."""
    units = 0.0
    for char in text:
        if char in _NARROW:
            units += 0.36
        elif char in _WIDE:
            units += 0.95
        elif char.isupper() or char.isdigit():
            units += 0.72
        else:
            units += 0.62
    return units * size * (1.1 if bold else 1.0)


def _attr(value: str) -> str:
    return escape(_clean(value), {'"': "&quot;"})


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def condition_text(condition: Condition) -> str:
    """A short human form of a decision condition, e.g. ``input.amount > 100 and not steps.x = "y"``."""
    if isinstance(condition, FactCondition):
        path = condition.path[1:] if condition.path != "$" else ""
        value = condition.value
        shown = "null" if value is None else (str(value).lower() if isinstance(value, bool) else (
            f'"{value}"' if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)))
        return f"{condition.fact}{path} {_OPERATORS[condition.operator]} {shown}"
    if isinstance(condition, AllCondition):
        return " and ".join(_grouped(c) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return " or ".join(_grouped(c) for c in condition.any)
    if isinstance(condition, NotCondition):
        return f"not {_grouped(condition.not_)}"
    raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover


def _grouped(condition: Condition) -> str:
    text = condition_text(condition)
    return f"({text})" if isinstance(condition, AllCondition | AnyCondition) and " " in text else text


def _detail(step: WorkflowStep) -> str:
    if step.type == "task":
        action = step.action
        if step.is_external:
            action = "λ " + action.split(":function:", 1)[-1]
        return action
    if step.type == "wait":
        wait = step.wait
        if isinstance(wait.seconds, int):
            return f"wait {wait.seconds}s"
        if wait.seconds is not None:
            return f"wait {wait.seconds} seconds"
        return f"wait until {wait.until}"
    if step.type == "subworkflow":
        return f"⇒ {step.action}"
    if step.type == "signal":
        return f"signal {step.signal.signal}"
    if step.type == "callback":
        return "callback"
    if step.type == "schedule":
        return f"⏲ {step.parameters.get('task', '')}"
    if step.type == "rules":
        return rules_step_text(step.rules.rules, step.rules.category)
    return "decision"


# -- layout -----------------------------------------------------------------------------------------------


class _Drawing:
    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.nodes: dict[str, _Node] = {}
        self.edges: list[_Edge] = []
        self.layers: list[list[str]] = []
        #: Whether implied dependencies were left out (see MAX_VIRTUAL_POINTS).
        self.reduced = False
        self._build_nodes()
        self._build_edges()
        self._split_long_edges()
        self._order()
        self._position()

    # nodes and edges
    def _build_nodes(self) -> None:
        steps = self.definition.steps
        deps = {s.id: [d for d in dict.fromkeys(s.dependencies) if d != s.id] for s in steps}
        depth: dict[str, int] = {}
        for step_id in topological_order([s.id for s in steps], deps):
            depth[step_id] = 1 + max((depth[d] for d in deps[step_id] if d in depth), default=0)
        last = max(depth.values(), default=0) + 1
        title = _shorten(self.definition.name)
        self._add(_Node(START, 0, 0, TERMINAL_HEIGHT, "terminal", name=title,
                        tooltip=f"{self.definition.name} ({self.definition.id} v{self.definition.version})"))
        self._add(_Node(FINISH, last, 0, TERMINAL_HEIGHT, "terminal", name="done", tooltip="done"))
        for step in steps:
            name = _shorten(step.name or step.id)
            detail = "" if step.type == "decision" else _shorten(_detail(step))
            height = DIAMOND_HEIGHT if step.type == "decision" else BOX_HEIGHT
            tooltip = f"{step.id} ({step.type})" + (f": {step.action}" if step.action else "")
            if step.name and step.name != step.id:
                tooltip = f"{step.name} — {tooltip}"
            self._add(_Node(step.id, depth[step.id], 0, height, step.type, name=name, detail=detail,
                            tooltip=tooltip))
        for node in self.nodes.values():
            node.width = self._width(node)

    def _add(self, node: _Node) -> None:
        self.nodes[node.key] = node

    @staticmethod
    def _width(node: _Node) -> float:
        text = max(text_width(node.name, NAME_SIZE, bold=bool(node.detail)), text_width(node.detail, DETAIL_SIZE))
        if node.kind == "decision":
            # one line, centred: at half the text's height from the middle the diamond is this much narrower
            width = (text + PADDING_X) / (1 - NAME_SIZE / DIAMOND_HEIGHT)
            return float(round(max(MIN_WIDTH, width)))
        return float(round(max(MIN_WIDTH if node.kind != "terminal" else 60, text + 2 * PADDING_X)))

    def _build_edges(self) -> None:
        steps = self.definition.steps
        labels: dict[tuple[str, str], tuple[str, str]] = {}
        for step in steps:
            if step.type != "decision":
                continue
            choices = step.decision.choices
            for index, (label, targets) in enumerate(branch_labels(step)):
                if label == "default":
                    text = full = "default"
                else:
                    condition = choices[index].condition
                    full = condition_text(condition) if condition is not None else rule_text(choices[index].rule)
                    text = _shorten(full, MAX_EDGE_LABEL)
                for target in targets:
                    labels[(step.id, target)] = (text, f"{label}: {full}" if label != "default" else full)
        has_dependents = {d for s in steps for d in s.dependencies}
        deps = {s.id: [d for d in dict.fromkeys(s.dependencies) if d != s.id and d in self.nodes] for s in steps}
        if self._virtual_points(deps) > MAX_VIRTUAL_POINTS:
            # Too many long edges to route: leave out the dependencies others already imply (the order shown
            # is the same), keeping every decision branch.
            deps = _transitive_reduction(deps, keep=set(labels))
            self.reduced = True
        for step in steps:
            if not step.dependencies:
                self.edges.append(_Edge(START, step.id))
            for dep in deps[step.id]:
                text, tooltip = labels.get((dep, step.id), ("", ""))
                self.edges.append(_Edge(dep, step.id, _clean(text), _clean(tooltip)))
        for step in steps:
            if step.id not in has_dependents:
                self.edges.append(_Edge(step.id, FINISH))

    def _virtual_points(self, deps: dict[str, list[str]]) -> int:
        return sum(max(0, self.nodes[s].layer - self.nodes[d].layer - 1) for s, ds in deps.items() for d in ds)

    def _split_long_edges(self) -> None:
        counter = 0
        for edge in self.edges:
            points = [edge.source]
            source, target = self.nodes[edge.source], self.nodes[edge.target]
            for layer in range(source.layer + 1, target.layer):
                counter += 1
                key = f"\x00v{counter}"
                self._add(_Node(key, layer, VIRTUAL_WIDTH, BOX_HEIGHT, "virtual"))
                points.append(key)
            points.append(edge.target)
            edge.points = points
        self.layers = [[] for _ in range(max(n.layer for n in self.nodes.values()) + 1)]
        for key, node in self.nodes.items():  # insertion order: terminals, steps in definition order, virtual
            self.layers[node.layer].append(key)

    # order within layers
    def _neighbours(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        up: dict[str, list[str]] = {k: [] for k in self.nodes}
        down: dict[str, list[str]] = {k: [] for k in self.nodes}
        for edge in self.edges:
            for a, b in zip(edge.points, edge.points[1:], strict=False):
                down[a].append(b)
                up[b].append(a)
        return up, down

    def _order(self) -> None:
        up, down = self._neighbours()
        # a first pass downwards puts virtual points next to where their edge comes from; then sweeps
        for sweep in range(SWEEPS + 1):
            downward = sweep % 2 == 0
            indices = range(1, len(self.layers)) if downward else range(len(self.layers) - 2, -1, -1)
            links = up if downward else down
            for index in indices:
                reference = self.layers[index - 1] if downward else self.layers[index + 1]
                self.layers[index] = _sorted_by(self.layers[index], _barycentre(reference, links))

    # coordinates
    def _position(self) -> None:
        up, down = self._neighbours()
        y = float(MARGIN)
        for layer in self.layers:
            height = max(self.nodes[k].height for k in layer)
            for key in layer:
                node = self.nodes[key]
                node.y = y + (height - node.height) / 2
            y += height + LAYER_GAP
        for layer in self.layers:  # packed, left aligned
            x = 0.0
            for key in layer:
                node = self.nodes[key]
                node.x = x + node.width / 2
                x += node.width + NODE_GAP
        for sweep in range(SWEEPS):
            downward = sweep % 2 == 0
            indices = range(1, len(self.layers)) if downward else range(len(self.layers) - 2, -1, -1)
            links = up if downward else down
            for index in indices:
                layer = self.layers[index]
                wanted = [
                    _mean(self.nodes[n].x for n in links[k]) if links[k] else self.nodes[k].x for k in layer
                ]
                self._place(layer, wanted)
        left = min(n.x - n.width / 2 for n in self.nodes.values())
        for node in self.nodes.values():
            node.x += MARGIN - left

    def _place(self, layer: Sequence[str], wanted: Sequence[float]) -> None:
        """Centres as close as possible (least squares) to ``wanted``, keeping order and ``NODE_GAP``."""
        offsets: list[float] = []
        total = 0.0
        for i, key in enumerate(layer):
            if i:
                total += self.nodes[layer[i - 1]].width / 2 + NODE_GAP + self.nodes[key].width / 2
            offsets.append(total)
        fitted = _isotonic([w - o for w, o in zip(wanted, offsets, strict=True)])
        for key, base, offset in zip(layer, fitted, offsets, strict=True):
            self.nodes[key].x = base + offset

    # drawing
    def render(self) -> str:
        nodes = self.nodes.values()
        width = max(n.x + n.width / 2 for n in nodes) + MARGIN
        height = max(n.y + n.height for n in nodes) + MARGIN
        title = f"{self.definition.name} ({self.definition.id} v{self.definition.version})"
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_num(height)}" '
            f'viewBox="0 0 {_num(width)} {_num(height)}" font-family="{FONT}" role="img" '
            'aria-labelledby="diagram-title">',
            f'<title id="diagram-title">{_attr(title)}</title>',
            *(["<!-- dependencies implied by others are not drawn: too many to route -->"] if self.reduced else []),
            "<defs>",
            '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/></marker>',
            "</defs>",
            f'<rect class="background" x="0" y="0" width="{_num(width)}" height="{_num(height)}" fill="#ffffff"/>',
            '<g class="edges" fill="none" stroke="#5f6368" stroke-width="1.4">',
        ]
        labels: list[str] = []
        for edge in self.edges:
            out.append(self._edge(edge))
            if edge.label:
                labels.append(self._edge_label(edge))
        out.append("</g>")
        out.append(f'<g class="edge-labels" font-size="{LABEL_SIZE}">')
        out.extend(labels)
        out.append("</g>")
        out.append('<g class="nodes">')
        for layer in self.layers:
            for key in layer:
                node = self.nodes[key]
                if node.kind != "virtual":
                    out.append(self._node(node))
        out.append("</g>")
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _anchor(self, key: str, bottom: bool) -> tuple[float, float]:
        node = self.nodes[key]
        return node.x, node.y + node.height if bottom else node.y

    def _edge(self, edge: _Edge) -> str:
        segments: list[str] = []
        x0, y0 = self._anchor(edge.points[0], bottom=True)
        segments.append(f"M{_num(x0)},{_num(y0)}")
        for i, key in enumerate(edge.points[1:], start=1):
            last = i == len(edge.points) - 1
            x1, y1 = self._anchor(key, bottom=False)
            middle = (y0 + y1) / 2
            segments.append(f"C{_num(x0)},{_num(middle)} {_num(x1)},{_num(middle)} {_num(x1)},{_num(y1)}")
            if not last:
                x0, y0 = self._anchor(key, bottom=True)
                segments.append(f"L{_num(x0)},{_num(y0)}")
        kind = "edge decision-edge" if edge.label else "edge"
        return (f'<path class="{kind}" data-from="{_attr(_public(edge.source))}" '
                f'data-to="{_attr(_public(edge.target))}" d="{" ".join(segments)}" marker-end="url(#arrow)"/>')

    def _edge_label(self, edge: _Edge) -> str:
        x0, y0 = self._anchor(edge.points[0], bottom=True)
        x1, y1 = self._anchor(edge.points[1], bottom=False)
        t = 0.65  # on the first curve, past its middle (sibling labels sit apart) and clear of the arrowhead
        middle = (y0 + y1) / 2
        x = _bezier(x0, x0, x1, x1, t)
        y = _bezier(y0, middle, middle, y1, t)
        width = text_width(edge.label, LABEL_SIZE) + 10
        height = LABEL_SIZE + 6
        return (
            f'<g class="edge-label" data-from="{_attr(_public(edge.source))}" '
            f'data-to="{_attr(_public(edge.target))}">'
            f"<title>{_attr(edge.label_tooltip)}</title>"
            f'<rect x="{_num(x - width / 2)}" y="{_num(y - height / 2)}" width="{_num(width)}" '
            f'height="{_num(height)}" rx="3" fill="#ffffff" stroke="#c0392b" stroke-width="0.8"/>'
            f'<text x="{_num(x)}" y="{_num(y + LABEL_SIZE * 0.35)}" text-anchor="middle" '
            f'fill="#7b1f16">{_attr(edge.label)}</text></g>'
        )

    def _node(self, node: _Node) -> str:
        fill, stroke = STYLE[node.kind]
        left, top, width, height = node.x - node.width / 2, node.y, node.width, node.height
        shapes: list[str] = []
        common = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"'
        if node.kind == "decision":
            points = [(node.x, top), (left + width, top + height / 2), (node.x, top + height), (left, top + height / 2)]
            shapes.append(f'<polygon points="{" ".join(f"{_num(px)},{_num(py)}" for px, py in points)}" {common}/>')
        else:
            radius = height / 2 if node.kind in ("wait", "terminal") else 4
            shapes.append(f'<rect x="{_num(left)}" y="{_num(top)}" width="{_num(width)}" height="{_num(height)}" '
                          f'rx="{_num(radius)}" {common}/>')
            if node.kind == "subworkflow":
                shapes.append(f'<rect x="{_num(left + 4)}" y="{_num(top + 4)}" width="{_num(width - 8)}" '
                              f'height="{_num(height - 8)}" rx="2" fill="none" stroke="{stroke}" stroke-width="1"/>')
        middle = top + height / 2
        texts: list[str] = []
        if node.detail:
            texts.append(f'<text x="{_num(node.x)}" y="{_num(middle - 2)}" text-anchor="middle" '
                         f'font-size="{NAME_SIZE}" font-weight="bold" fill="#202124">{_attr(node.name)}</text>')
            texts.append(f'<text x="{_num(node.x)}" y="{_num(middle + DETAIL_SIZE + 1)}" text-anchor="middle" '
                         f'font-size="{DETAIL_SIZE}" fill="#3c4043">{_attr(node.detail)}</text>')
        else:
            texts.append(f'<text x="{_num(node.x)}" y="{_num(middle + NAME_SIZE * 0.35)}" text-anchor="middle" '
                         f'font-size="{NAME_SIZE}" fill="#202124">{_attr(node.name)}</text>')
        if node.kind == "terminal":
            identity = f'class="terminal" data-terminal="{"start" if node.key == START else "finish"}"'
        else:
            identity = f'class="node step {node.kind}" id="step-{_attr(node.key)}" data-step-id="{_attr(node.key)}"'
        return f"<g {identity}><title>{_attr(node.tooltip)}</title>{''.join(shapes)}{''.join(texts)}</g>"


def _transitive_reduction(deps: Mapping[str, list[str]], keep: set[tuple[str, str]]) -> dict[str, list[str]]:
    """``deps`` without the dependencies implied by others (``d`` of ``s`` when another dependency of ``s``
    already depends on ``d``, directly or not); ``(d, s)`` pairs in ``keep`` stay."""
    order = topological_order(list(deps), deps)
    bit = {step: 1 << i for i, step in enumerate(order)}
    reach: dict[str, int] = {}  # every step a step depends on, directly or not
    reduced: dict[str, list[str]] = {}
    for step in order:
        implied = 0
        for dep in deps[step]:
            implied |= reach[dep]
        reduced[step] = [d for d in deps[step] if not implied & bit[d] or (d, step) in keep]
        everything = implied
        for dep in deps[step]:
            everything |= bit[dep]
        reach[step] = everything
    return {step: reduced[step] for step in deps}


def _public(key: str) -> str:
    return {START: "start", FINISH: "done"}.get(key, key)


def _barycentre(reference: Sequence[str], links: dict[str, list[str]]) -> Callable[[str], float]:
    position = {k: float(i) for i, k in enumerate(reference)}

    def score(key: str) -> float:
        return _mean(position[n] for n in links[key])

    return score


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else float("nan")


def _sorted_by(layer: list[str], score: Callable[[str], float]) -> list[str]:
    """Stable sort by barycentre; nodes without neighbours (NaN) keep their slots."""
    values = [score(k) for k in layer]
    known = [(v, i) for i, v in enumerate(values) if v == v]  # not NaN
    order = iter(i for _, i in sorted(known))
    return [layer[next(order)] if v == v else layer[i] for i, v in enumerate(values)]


def _isotonic(values: Sequence[float]) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for value in values:
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + weight
            previous[0] = (previous[0] * previous[1] + mean * weight) / total
            previous[1] = total
    result: list[float] = []
    for mean, weight in blocks:
        result.extend([mean] * int(weight))
    return result


def _bezier(p0: float, p1: float, p2: float, p3: float, t: float) -> float:
    u = 1 - t
    return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3


def step_ids(document: str) -> list[str]:
    """The step ids drawn in an SVG made by ``svg`` (for tests and tools)."""
    return re.findall(r'data-step-id="([^"]*)"', document)


__all__ = ["condition_text", "step_ids", "svg", "text_width"]
