"""The ``coafi`` command line: validate, compile, diagram, schema — exit codes and what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coafi.cli.main import main

BAD_DEFINITION = """\
id: Bad_Workflow
name: Bad
version: 1
steps:
  - {id: fetch, action: ecko}
  - {id: store, action: echo, dependencies: [fetsh]}
  - {id: store, action: echo}
  - {id: pause, type: wait, parameters: {seconds: -3}}
"""


@pytest.fixture
def bad_project(tmp_path: Path) -> Path:
    """A project with one action (echo) and a definition with six problems."""
    handler = tmp_path / "functions" / "actions" / "echo" / "handler.py"
    handler.parent.mkdir(parents=True)
    handler.write_text("def handler(event, context):\n    return event\n")
    folder = tmp_path / "statemachines"
    folder.mkdir()
    (folder / "bad.yaml").write_text(BAD_DEFINITION)
    return tmp_path


def test_validate_accepts_the_shipped_definitions(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(repo_root / "statemachines")]) == 0
    out, err = capsys.readouterr()
    assert "ok  content-generation v1.0.0: 6 steps" in out.splitlines()
    assert err == ""


def test_validate_defaults_to_the_project_statemachines(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo_root)
    assert main(["validate"]) == 0
    assert "ok  content-generation" in capsys.readouterr().out


def test_validate_reports_every_problem_on_stderr_and_exits_1(
    bad_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_project / "statemachines" / "bad.yaml"
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "6 problems found:"
    expected = [
        f"{path}: id: id 'Bad_Workflow' is not valid",
        f'{path}: version: version must be a string; quote it: version: "1"',
        f"{path}: step 'fetch': steps[0].action: unknown action 'ecko': no functions/actions/ecko/handler.py; "
        "did you mean 'echo'?",
        f"{path}: step 'store': steps[1].dependencies[0]: unknown step 'fetsh'; did you mean 'fetch'?",
        f"{path}: step 'store': steps[2].id: duplicate step id 'store' (first used at steps[1])",
        f"{path}: step 'pause': steps[3].parameters.seconds: seconds must be between 0 and 31536000 (one year), got -3",
    ]
    for line in expected:
        assert any(line in rendered for rendered in lines), f"missing {line!r} in:\n{err}"


def test_validate_reports_syntax_errors_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nsteps:\n  - id: a\n   action: echo\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: line 4 column 4: invalid YAML" in err


def test_compile_prints_asl_json(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(repo_root / "statemachines" / "content-generation.yaml")]) == 0
    out = capsys.readouterr().out
    asl = json.loads(out)
    assert asl["StartAt"] == "coafi.start"
    body = asl["States"]["coafi.run"]["Branches"][0]["States"]
    steps = ["validateParameters", "checkPermissions", "generateContent", "storeContent", "updateRegistry",
             "notifySubscribers"]
    assert set(steps) <= set(body)
    assert "\n" in out.strip()  # indented by default


def test_compile_compact_is_one_line(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "--compact", str(repo_root / "statemachines" / "content-generation.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["StartAt"] == "coafi.start"


def test_compile_of_a_bad_file_exits_1(bad_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(bad_project / "statemachines" / "bad.yaml")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("6 problems found:")


def test_diagram_prints_a_mermaid_flowchart(fixture_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", str(fixture_project / "statemachines" / "routing.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD\n")
    assert "-->|choice-1|" in out and "-->|default|" in out


def test_schema_describes_the_definition_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "COAFI workflow definition"
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"id", "name", "version", "steps"} <= set(schema["required"])
    assert "steps" in schema["properties"] and "triggers" in schema["properties"]


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "usage: coafi" in capsys.readouterr().err


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "coafi"
    return [str(script)] if script.exists() else [sys.executable, "-m", "coafi.cli.main"]


def test_the_installed_console_script_validates(repo_root: Path, bad_project: Path) -> None:
    ok = subprocess.run([*console_script(), "validate", "statemachines"], cwd=repo_root, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "ok  content-generation" in ok.stdout
    bad = subprocess.run([*console_script(), "validate"], cwd=bad_project, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("6 problems found:") and bad.stdout == ""
