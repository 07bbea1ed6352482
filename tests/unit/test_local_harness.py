"""Pure logic of the local cloud harness: health parsing, endpoint selection, runtime -> interpreter mapping,
process identity helpers, the file lock and the LocalStack environment. No LocalStack needed."""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from coafi.local import harness, health, proc
from coafi.local.harness import DEFAULT_ENDPOINT, configured_endpoint, localstack_environment
from coafi.local.install import LAMBDA_PYTHON_VERSIONS, Markers
from coafi.local.layout import PLUGIN_SOURCE, LocalLayout, find_project_root


def _load_plugin_runtimes() -> ModuleType:
    # the plugin package runs inside LocalStack's venv; its runtimes module is pure and loadable from its file
    path = PLUGIN_SOURCE / "coafi_localstack_plugin" / "runtimes.py"
    spec = importlib.util.spec_from_file_location("coafi_plugin_runtimes_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runtimes = _load_plugin_runtimes()


# ---- health -----------------------------------------------------------------------------------------------
def _doc(**overrides: str) -> dict[str, object]:
    services = {name: "available" for name in health.REQUIRED_SERVICES}
    services.update(overrides)
    return {"services": services, "edition": "community", "version": "2026.3.0"}


def test_all_required_services_available_or_running_is_ready() -> None:
    doc = _doc(s3="running", dynamodb="running")
    assert health.is_ready(doc)
    assert health.not_ready(health.service_states(doc)) == {}


def test_not_ready_lists_disabled_errored_and_missing_services() -> None:
    doc = _doc(lambda_="available", dynamodb="error", sqs="disabled")
    states = health.service_states(doc)
    del states["scheduler"]
    assert health.not_ready(states) == {"dynamodb": "error", "sqs": "disabled", "scheduler": "missing"}
    assert not health.is_ready({"services": states})


@pytest.mark.parametrize("doc", [None, {}, {"services": "nope"}, {"status": "ok"}])
def test_health_documents_without_services_are_not_ready(doc: dict[str, object] | None) -> None:
    assert health.service_states(doc) == {}
    assert not health.is_ready(doc)


def test_unreachable_endpoint_has_no_health() -> None:
    assert health.fetch_health("http://127.0.0.1:9", timeout=0.5) is None


# ---- endpoint selection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "  ", DEFAULT_ENDPOINT, DEFAULT_ENDPOINT + "/"])
def test_embedded_mode_when_endpoint_unset_or_default(value: str) -> None:
    assert configured_endpoint({"AWS_ENDPOINT_URL": value}) is None
    assert configured_endpoint({}) is None


@pytest.mark.parametrize("value", ["http://localhost:4566", "http://localstack:4566/", "https://ls.example:443"])
def test_external_mode_for_any_other_endpoint(value: str) -> None:
    assert configured_endpoint({"AWS_ENDPOINT_URL": value}) == value.rstrip("/")


# ---- runtime -> interpreter -------------------------------------------------------------------------------
def test_harness_and_plugin_agree_on_the_runtime_table() -> None:
    assert runtimes.PYTHON_RUNTIME_VERSIONS == LAMBDA_PYTHON_VERSIONS


def _fake_python(folder: Path) -> Path:
    python = folder / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python


def test_runtime_maps_to_the_pyenv_prefix_of_its_version(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "3.12.1")
    asked: list[str] = []

    def prefix(version: str) -> Path:
        asked.append(version)
        return tmp_path / version

    assert runtimes.find_interpreter("python3.12", env={}, pyenv_prefix=prefix) == python
    assert asked == ["3.12.1"]


def test_interpreters_env_overrides_pyenv(tmp_path: Path) -> None:
    python = _fake_python(tmp_path)
    env = {runtimes.INTERPRETERS_ENV: f'{{"python3.11": "{python}"}}'}
    assert runtimes.find_interpreter("python3.11", env=env, pyenv_prefix=lambda v: None) == python


def test_pyenv_root_fallback(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "versions" / "3.13.0")
    env = {"PYENV_ROOT": str(tmp_path)}
    assert runtimes.find_interpreter("python3.13", env=env, pyenv_prefix=lambda v: None) == python


@pytest.mark.parametrize("runtime", ["nodejs20.x", "python3.9", "java21", None, ""])
def test_unsupported_runtimes_raise_clearly(runtime: str | None) -> None:
    with pytest.raises(runtimes.UnsupportedRuntimeError, match=r"not supported|image"):
        runtimes.find_interpreter(runtime, env={}, pyenv_prefix=lambda v: None)


def test_missing_interpreter_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(runtimes.UnsupportedRuntimeError, match=r"pyenv install 3\.12\.1"):
        runtimes.find_interpreter("python3.12", env={"PYENV_ROOT": str(tmp_path)}, pyenv_prefix=lambda v: None)


def test_non_executable_override_is_rejected(tmp_path: Path) -> None:
    env = {runtimes.INTERPRETERS_ENV: f'{{"python3.12": "{tmp_path / "nope"}"}}'}
    with pytest.raises(runtimes.UnsupportedRuntimeError, match="not executable"):
        runtimes.find_interpreter("python3.12", env=env)


# ---- layout, markers, environment -------------------------------------------------------------------------
def test_project_root_is_the_nearest_folder_with_a_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COAFI_PROJECT_ROOT", raising=False)
    (tmp_path / "pyproject.toml").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_root(nested) == tmp_path.resolve()
    monkeypatch.setenv("COAFI_PROJECT_ROOT", str(nested))
    assert find_project_root(tmp_path) == nested.resolve()


def test_markers_match_only_the_same_key(tmp_path: Path) -> None:
    markers = Markers(LocalLayout(tmp_path))
    assert not markers.matches("step", "k1")
    markers.write("step", "k1", note="x")
    assert markers.matches("step", "k1")
    assert not markers.matches("step", "k2")
    markers.clear("step")
    assert not markers.matches("step", "k1")


def test_localstack_environment_is_host_mode_offline_with_the_coafi_executor(tmp_path: Path) -> None:
    layout = LocalLayout(tmp_path)
    base = {"PATH": "/usr/bin", "AWS_ENDPOINT_URL": "http://x", "PYTHONPATH": "/leak", "VIRTUAL_ENV": "/v"}
    env = localstack_environment(layout, {"python3.12": Path("/py312")}, base=base)
    assert env["OVERRIDE_IN_DOCKER"] == "0"
    assert env["GATEWAY_LISTEN"] == f"127.0.0.1:{harness.PORT}"  # COAFI_LOCAL_PORT's, 4566 when unset
    assert env["FILESYSTEM_ROOT"] == str(layout.filesystem_root)
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == "coafi"
    assert env["DNS_ADDRESS"] == "0" and env["DISABLE_EVENTS"] == "1" and env["SKIP_SSL_CERT_DOWNLOAD"] == "1"
    assert '"python3.12": "/py312"' in env["COAFI_LAMBDA_INTERPRETERS"]
    assert env["PATH"] == "/usr/bin"
    assert not {"AWS_ENDPOINT_URL", "PYTHONPATH", "VIRTUAL_ENV"} & set(env)
    assert env["ENABLE_CONFIG_UPDATES"] == "1"  # fault injection for the e2e fault suite
    assert env["PERSISTENCE"] == "1"  # DynamoDB Local's data survives a restart
    assert localstack_environment(layout, {}, base={"ENABLE_CONFIG_UPDATES": "0"})["ENABLE_CONFIG_UPDATES"] == "0"


# ---- processes and lock -----------------------------------------------------------------------------------
def test_pid_identity_includes_the_start_time() -> None:
    started = proc.start_time(os.getpid())
    assert started is not None
    assert proc.is_alive(os.getpid(), started)
    assert not proc.is_alive(os.getpid(), started + 1)  # same PID, other process (recycled PID)


def test_descendants_are_found_and_killed_by_pid() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not (children := proc.descendants(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children) == 1
        (child, started), = children.items()
        assert "sleep" in proc.cmdline(child)
        assert proc.send_signal(child, signal.SIGKILL, started)
        assert proc.wait_gone(child, started, 5)
    finally:
        parent.kill()
        parent.wait()


def test_file_lock_is_exclusive(tmp_path: Path) -> None:
    lock = tmp_path / "up.lock"
    with proc.file_lock(lock, timeout=1), pytest.raises(proc.LockTimeout), proc.file_lock(lock, timeout=0.2):
        pass
    with proc.file_lock(lock, timeout=1):  # released again
        pass


def test_port_owner_finds_a_listening_socket() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert proc.port_open("127.0.0.1", port)
        assert proc.port_owner(port) == os.getpid()


@pytest.mark.parametrize("port", [4566, 4620])
def test_localstack_listens_on_the_configured_port(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "PORT", port)
    env = localstack_environment(LocalLayout(tmp_path), {}, base={"PATH": "/usr/bin"})
    assert env["GATEWAY_LISTEN"] == f"127.0.0.1:{port}"


def test_importing_coafi_local_is_cheap() -> None:
    code = "import sys, coafi.local; print([m for m in sys.modules if m.startswith(('coafi.local.', 'pydantic'))])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _harness_endpoint(port: str) -> subprocess.CompletedProcess[str]:
    code = "import coafi.local.harness as h; print(h.DEFAULT_ENDPOINT)"
    env = {**os.environ, "COAFI_LOCAL_PORT": port}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)


def test_local_port_is_chosen_by_environment() -> None:
    # two checkouts can each run their own local cloud: the port comes from COAFI_LOCAL_PORT
    done = _harness_endpoint("4600")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://127.0.0.1:4600"


@pytest.mark.parametrize("port", ["abc", "80", "70000"])
def test_bad_local_port_names_the_variable(port: str) -> None:
    done = _harness_endpoint(port)
    assert done.returncode != 0
    assert f"COAFI_LOCAL_PORT={port!r}" in done.stderr
