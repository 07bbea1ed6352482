"""``coafi diagram --format svg``: valid XML, one shape per step by type, every dependency an arrow going down,
decision edges labelled, no overlapping boxes, the same bytes every time."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from coafi.cli.main import main
from coafi.compiler import svg as svg_module
from coafi.compiler.svg import condition_text, step_ids, svg, text_width
from coafi.definitions import WorkflowDefinition, definition_files, load_definition, validate_definition
from coafi.definitions.models import DecisionChoice
from tests.unit.test_compiler import random_dag, random_decision_workflow

REPO = Path(__file__).resolve().parents[2]
NS = {"svg": "http://www.w3.org/2000/svg"}
SAMPLES = definition_files([REPO / "statemachines", REPO / "tests" / "fixtures" / "project" / "statemachines"])


def define(*steps: dict[str, Any], name: str = "Workflow") -> WorkflowDefinition:
    return validate_definition({"id": "wf", "name": name, "version": "1", "steps": list(steps)}, "wf.yaml",
                               actions=None)


def parse(document: str) -> ET.Element:
    root = ET.fromstring(document.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def step_groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-step-id", ""): g for g in root.iterfind(".//svg:g[@data-step-id]", NS)}


def texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iterfind(".//svg:text", NS)]


def bounds(group: ET.Element) -> tuple[float, float, float, float]:
    """left, top, right, bottom of a node's outer shape."""
    shape = group.find("svg:rect", NS)
    if shape is not None:
        x, y = float(shape.get("x", 0)), float(shape.get("y", 0))
        return x, y, x + float(shape.get("width", 0)), y + float(shape.get("height", 0))
    polygon = group.find("svg:polygon", NS)
    assert polygon is not None
    points = [tuple(map(float, p.split(","))) for p in polygon.get("points", "").split()]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def edges(root: ET.Element) -> list[ET.Element]:
    return list(root.iterfind(".//svg:path[@data-from]", NS))


def check_picture(definition: WorkflowDefinition) -> ET.Element:
    """Everything every picture must satisfy."""
    document = svg(definition)
    root = parse(document)
    groups = step_groups(root)
    assert sorted(step_ids(document)) == sorted(s.id for s in definition.steps)  # one node per step
    assert sorted(groups) == sorted(s.id for s in definition.steps)
    boxes = {sid: bounds(g) for sid, g in groups.items()}
    terminals = {g.get("data-terminal"): bounds(g) for g in root.iterfind(".//svg:g[@data-terminal]", NS)}
    assert set(terminals) == {"start", "finish"}
    everything = {**boxes, "start": terminals["start"], "done": terminals["finish"]}
    for (a, box_a), (b, box_b) in combinations(everything.items(), 2):
        overlap = box_a[0] < box_b[2] and box_b[0] < box_a[2] and box_a[1] < box_b[3] and box_b[1] < box_a[3]
        assert not overlap, f"{a} and {b} overlap"
    drawn = {(e.get("data-from"), e.get("data-to")) for e in edges(root)}
    for step in definition.steps:
        for dep in step.dependencies:
            assert everything[dep][3] < everything[step.id][1], f"{dep} -> {step.id} does not go down"
        if not step.dependencies:
            assert ("start", step.id) in drawn
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    assert all(min(b[0], b[1]) >= 0 and b[2] <= width and b[3] <= height for b in everything.values())
    return root


# -- the shipped and fixture definitions -------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_definitions_draw_one_node_per_step_and_every_dependency(path: Path) -> None:
    definition = load_definition(path, actions=None)
    root = check_picture(definition)
    drawn = {(e.get("data-from"), e.get("data-to")) for e in edges(root)}
    for step in definition.steps:
        for dep in step.dependencies:
            assert (dep, step.id) in drawn  # small enough: every declared dependency is drawn
    assert definition.name in "".join(root.itertext())


def test_shapes_follow_step_types_and_labels_are_readable() -> None:
    definition = load_definition(REPO / "statemachines" / "content-campaign.yaml")
    root = parse(svg(definition))
    groups = step_groups(root)
    by_type = {s.id: s.type for s in definition.steps}
    for sid, group in groups.items():
        kind = by_type[sid]
        assert kind in (group.get("class") or "").split()
        rects = group.findall("svg:rect", NS)
        if kind == "decision":
            assert group.find("svg:polygon", NS) is not None and not rects
        elif kind == "subworkflow":
            assert len(rects) == 2  # double border
        elif kind == "wait":
            (rect,) = rects
            assert float(rect.get("rx", 0)) == float(rect.get("height", 0)) / 2  # rounded ends
        else:
            (rect,) = rects
            assert float(rect.get("rx", 0)) < 10
    assert texts(groups["article"]) == ["Generate the article", "⇒ content-generation"]
    assert texts(groups["launchTiming"]) == ["Announce now or after the embargo?"]
    assert "wait" in texts(groups["embargo"])[1]
    labels = {(g.get("data-from"), g.get("data-to")): texts(g)
              for g in root.iterfind(".//svg:g[@class='edge-label']", NS)}
    assert labels == {("launchTiming", "announce"): ["input.launch.immediate = true"],
                      ("launchTiming", "embargo"): ["default"]}


def test_the_same_definition_gives_the_same_bytes() -> None:
    definition = define(*random_decision_workflow(random.Random(11), 30))
    assert svg(definition) == svg(define(*random_decision_workflow(random.Random(11), 30)))


def test_cli_diagram_format_svg_prints_the_picture_and_mermaid_stays_the_default(
    capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "statemachines" / "content-campaign.yaml"
    assert main(["diagram", str(path), "--format", "svg"]) == 0
    assert capsys.readouterr().out == svg(load_definition(path))
    assert main(["diagram", str(path)]) == 0
    assert capsys.readouterr().out.startswith("flowchart TD")
    with pytest.raises(SystemExit):
        main(["diagram", str(path), "--format", "png"])


# -- generated definitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_decision_workflows(seed: int) -> None:
    rng = random.Random(seed)
    steps = random_decision_workflow(rng, rng.randint(4, 40))
    last = steps[-1]["id"]
    steps += [
        {"id": "pause", "type": "wait", "parameters": {"until": "$.input.when"}, "dependencies": [last]},
        {"id": "child", "type": "subworkflow", "action": "other", "dependencies": ["pause"]},
    ]
    definition = define(*steps)
    root = check_picture(definition)
    decisions = [s for s in definition.steps if s.type == "decision"]
    labelled = {(g.get("data-from"), g.get("data-to")) for g in root.iterfind(".//svg:g[@class='edge-label']", NS)}
    for decision in decisions:
        params = decision.decision
        targets = {t for c in params.choices for t in c.next} | set(params.default)
        assert {(decision.id, t) for t in targets} <= labelled


@pytest.mark.parametrize(("size", "density"), [(1, 0.0), (12, 0.3), (60, 0.08)])
def test_random_dags(size: int, density: float) -> None:
    check_picture(define(*random_dag(random.Random(size), size, density)))


def test_too_many_long_edges_leave_out_implied_dependencies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svg_module, "MAX_VIRTUAL_POINTS", 0)
    steps: list[dict[str, Any]] = [{"id": "a", "action": "x"}, {"id": "b", "action": "x", "dependencies": ["a"]},
             {"id": "c", "action": "x", "dependencies": ["a", "b"]}]
    document = svg(define(*steps))
    root = parse(document)
    drawn = {(e.get("data-from"), e.get("data-to")) for e in edges(root)}
    assert ("a", "c") not in drawn and {("a", "b"), ("b", "c")} <= drawn
    assert "implied by others are not drawn" in document


# -- text --------------------------------------------------------------------------------------------------


def test_names_are_escaped_cleaned_and_shortened_with_the_full_text_in_a_tooltip() -> None:
    long_name = "Check <stock> & \"reserve\" it for the customer's order before anything else"
    definition = define({"id": "check", "name": long_name + "\x07", "action": "x"}, name="A & B <c>")
    root = parse(svg(definition))
    (group,) = step_groups(root).values()
    (name, detail) = texts(group)
    assert name.endswith("…") and len(name) <= 36 and name.startswith("Check <stock> & \"reserve\"")
    assert detail == "x"
    title = group.find("svg:title", NS)
    assert title is not None and long_name in (title.text or "")
    assert "A & B <c>" in "".join(root.itertext())


def test_external_lambda_actions_show_the_function_name() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:partner-scoring"
    (group,) = step_groups(parse(svg(define({"id": "score", "action": arn})))).values()
    assert texts(group) == ["score", "λ partner-scoring"]


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        ({"fact": "input", "path": "$.amount", "operator": "greaterThan", "value": 100}, "input.amount > 100"),
        ({"fact": "steps", "path": "$.check.output.ok", "operator": "equal", "value": True},
         "steps.check.output.ok = true"),
        ({"fact": "input", "operator": "notEqual", "value": None}, "input ≠ null"),
        ({"fact": "input", "path": "$.tier", "operator": "equal", "value": "gold"}, 'input.tier = "gold"'),
        ({"all": [{"fact": "input", "path": "$.a", "operator": "lessThan", "value": 1.5},
                  {"any": [{"fact": "input", "path": "$.b", "operator": "equal", "value": 1},
                           {"not": {"fact": "input", "path": "$.c", "operator": "greaterThanInclusive",
                                    "value": 2}}]}]},
         "input.a < 1.5 and (input.b = 1 or not input.c ≥ 2)"),
    ],
)
def test_condition_text(condition: dict[str, Any], text: str) -> None:
    choice = DecisionChoice.model_validate({"condition": condition, "next": ["x"]})
    assert choice.condition is not None and condition_text(choice.condition) == text


def test_text_width_estimate_grows_with_text_and_bold() -> None:
    assert text_width("", 13) == 0
    assert text_width("iiii", 13) < text_width("mmmm", 13) < text_width("MMMM", 13, bold=True)
    assert re.fullmatch(r"[\d.]+", str(text_width("abc", 11)))
