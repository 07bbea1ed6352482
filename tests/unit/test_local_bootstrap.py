"""The Lambda bootstrap of the LocalStack plugin against a fake executor endpoint (no LocalStack): the runtime
callback protocol (ready -> invoke -> logs + response/error), error documents, init errors, layers on sys.path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from coafi.local.layout import PLUGIN_SOURCE

BOOTSTRAP = PLUGIN_SOURCE / "coafi_localstack_plugin" / "bootstrap.py"
RUNTIME_ID = "0123456789abcdef"


@dataclass
class FakeEndpoint:
    """Plays LocalStack's executor endpoint: records every callback POST by path."""

    url: str = ""
    calls: dict[str, bytes] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, path: str, timeout: float = 10) -> bytes:
        with self.cond:
            assert self.cond.wait_for(lambda: path in self.calls, timeout), f"no POST {path}; got {list(self.calls)}"
            return self.calls[path]


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            prefix = f"/_localstack_lambda/{RUNTIME_ID}"
            with fake.cond:
                fake.calls[self.path.removeprefix(prefix)] = body
                fake.cond.notify_all()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/_localstack_lambda/{RUNTIME_ID}"
    yield fake
    server.shutdown()
    server.server_close()


def _start(endpoint: FakeEndpoint, tmp_path: Path, handler_code: str, *, layers: list[Path] | None = None,
           handler: str = "handler.handler") -> subprocess.Popen[bytes]:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "handler.py").write_text(handler_code)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LOCALSTACK_RUNTIME_ENDPOINT": endpoint.url,
        "LOCALSTACK_RUNTIME_ID": RUNTIME_ID,
        "_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "3",
        "_COAFI_CODE_DIR": str(code),
        "_COAFI_SYS_PATH": os.pathsep.join(str(p) for p in layers or []),
        "_COAFI_INVOCATION_LOG": str(tmp_path / "invocation.log"),
        "_COAFI_PARENT_PID": str(os.getpid()),
    }
    return subprocess.Popen([sys.executable, "-u", "-s", "-P", str(BOOTSTRAP)], cwd=code, env=env,
                            stderr=subprocess.PIPE, start_new_session=True)


def _invoke(endpoint: FakeEndpoint, request_id: str, event: Any) -> None:
    port = json.loads(endpoint.wait_for(f"/status/{RUNTIME_ID}/ready"))["port"]
    body = json.dumps({"invoke-id": request_id, "invoked-function-arn": "arn:fn", "payload": json.dumps(event)})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invoke", data=body.encode(), method="POST")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as response:
        assert response.status == 202


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_invocations_respond_and_post_logs_warm(endpoint: FakeEndpoint, tmp_path: Path,
                                                stop: list[subprocess.Popen[bytes]]) -> None:
    stop.append(_start(endpoint, tmp_path, (
        "print('init!')\n"
        "def handler(event, context):\n"
        "    print('got', event['n'], context.function_name, context.aws_request_id)\n"
        "    return {'double': event['n'] * 2}\n"
    )))
    _invoke(endpoint, "r1", {"n": 4})
    assert json.loads(endpoint.wait_for("/invocations/r1/response")) == {"double": 8}
    logs = json.loads(endpoint.calls["/invocations/r1/logs"])["logs"]
    assert logs.startswith("init!\nSTART RequestId: r1")
    assert "got 4 fn r1\n" in logs
    assert "END RequestId: r1\nREPORT RequestId: r1\tDuration:" in logs and "Init Duration" in logs
    _invoke(endpoint, "r2", {"n": 5})  # same process
    assert json.loads(endpoint.wait_for("/invocations/r2/response")) == {"double": 10}
    assert "Init Duration" not in json.loads(endpoint.calls["/invocations/r2/logs"])["logs"]


def test_exception_posts_an_error_named_by_its_class(endpoint: FakeEndpoint, tmp_path: Path,
                                                     stop: list[subprocess.Popen[bytes]]) -> None:
    stop.append(_start(endpoint, tmp_path, (
        "class PermissionDenied(Exception):\n    pass\n"
        "def handler(event, context):\n    raise PermissionDenied('no way')\n"
    )))
    _invoke(endpoint, "r1", {})
    error = json.loads(endpoint.wait_for("/invocations/r1/error"))
    assert error["errorType"] == "PermissionDenied"
    assert error["errorMessage"] == "no way"
    assert error["requestId"] == "r1"
    assert all("bootstrap.py" not in frame for frame in error["stackTrace"])
    assert "handler.py" in error["stackTrace"][0]
    logs = json.loads(endpoint.calls["/invocations/r1/logs"])["logs"]
    assert "[ERROR] PermissionDenied: no way" in logs


def test_unserialisable_result_is_a_marshal_error(endpoint: FakeEndpoint, tmp_path: Path,
                                                  stop: list[subprocess.Popen[bytes]]) -> None:
    stop.append(_start(endpoint, tmp_path, "def handler(event, context):\n    return object()\n"))
    _invoke(endpoint, "r1", {})
    assert json.loads(endpoint.wait_for("/invocations/r1/error"))["errorType"] == "Runtime.MarshalError"


def test_import_error_is_reported_at_init_and_the_process_exits(endpoint: FakeEndpoint, tmp_path: Path,
                                                                 stop: list[subprocess.Popen[bytes]]) -> None:
    process = _start(endpoint, tmp_path, "import no_such_module_anywhere\n")
    stop.append(process)
    error = json.loads(endpoint.wait_for(f"/status/{RUNTIME_ID}/error"))
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'handler'" in error["errorMessage"]
    assert process.wait(timeout=5) == 1


def test_missing_handler_function_is_reported(endpoint: FakeEndpoint, tmp_path: Path,
                                              stop: list[subprocess.Popen[bytes]]) -> None:
    stop.append(_start(endpoint, tmp_path, "x = 1\n", handler="handler.nope"))
    error = json.loads(endpoint.wait_for(f"/status/{RUNTIME_ID}/error"))
    assert error["errorType"] == "Runtime.HandlerNotFound"


def test_code_dir_then_layers_are_on_sys_path(endpoint: FakeEndpoint, tmp_path: Path,
                                              stop: list[subprocess.Popen[bytes]]) -> None:
    layer = tmp_path / "layer" / "python"
    layer.mkdir(parents=True)
    (layer / "shared_helper.py").write_text("VALUE = 'from layer'\n")
    stop.append(_start(endpoint, tmp_path, (
        "import sys, shared_helper\n"
        "def handler(event, context):\n"
        "    return [shared_helper.VALUE, sys.path[:2]]\n"
    ), layers=[layer]))
    _invoke(endpoint, "r1", {})
    value, path = json.loads(endpoint.wait_for("/invocations/r1/response"))
    assert value == "from layer"
    assert path == [str(tmp_path / "code"), str(layer)]
