"""Bootstrap of one local Lambda execution environment (runs in the function's interpreter, stdlib only).

Started by :mod:`coafi_localstack_plugin.executor` as ``python -u -s -P bootstrap.py`` with the function's
environment. It plays the part of AWS's runtime + LocalStack's init and speaks LocalStack's runtime callback
protocol with the executor endpoint (``$LOCALSTACK_RUNTIME_ENDPOINT``):

1. init: put the code dir, the layers and the runtime site (boto3) on ``sys.path``, import the handler
   (failure: ``POST /status/<id>/error`` with the error document, then exit);
2. serve ``POST /invoke`` on a free 127.0.0.1 port and report it with ``POST /status/<id>/ready``;
3. per invocation: run the handler with its stdout/stderr (file descriptors 1 and 2, so also C code and child
   processes) captured, then ``POST /invocations/<request id>/logs`` and ``.../response`` or ``.../error``
   (``{"errorType": <exception class name>, "errorMessage": ..., "stackTrace": [...]}``).

The executor enforces the timeout by killing this process group; this process exits by itself when its
parent (LocalStack) goes away.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from types import TracebackType
from typing import Any

RUNTIME_ENDPOINT = os.environ.get("LOCALSTACK_RUNTIME_ENDPOINT", "")
RUNTIME_ID = os.environ.get("LOCALSTACK_RUNTIME_ID", "")

# executor -> bootstrap configuration; removed from the environment before user code runs
CODE_DIR = os.environ.pop("_COAFI_CODE_DIR", os.getcwd())
EXTRA_PATHS = [p for p in os.environ.pop("_COAFI_SYS_PATH", "").split(os.pathsep) if p]
INVOCATION_LOG = os.environ.pop("_COAFI_INVOCATION_LOG", "")
PARENT_PID = int(os.environ.pop("_COAFI_PARENT_PID", "0") or 0)

_REAL_STDERR_FD = os.dup(2)


def _diag(message: str) -> None:
    """Diagnostics of the bootstrap itself (go to the environment's process log, never to function logs)."""
    os.write(_REAL_STDERR_FD, f"[coafi-bootstrap {RUNTIME_ID[:8]}] {message}\n".encode())


def _post(path: str, body: bytes, content_type: str = "application/json") -> None:
    """POST to the executor's runtime endpoint (plain HTTP on loopback). http.client, not urllib's opener: building
    one creates an SSL context (~20 ms of CPU), twice per invocation."""
    endpoint = urllib.parse.urlsplit(RUNTIME_ENDPOINT)
    connection = http.client.HTTPConnection(endpoint.hostname or "127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request("POST", f"{endpoint.path.rstrip('/')}{path}", body=body,
                           headers={"Content-Type": content_type})
        connection.getresponse().read()
    except Exception as exc:  # the executor may have given up on this request (timeout) or be shutting down
        _diag(f"POST {path} failed: {exc}")
    finally:
        connection.close()


def _watch_parent() -> None:
    while True:
        time.sleep(1.0)
        if PARENT_PID and os.getppid() != PARENT_PID:
            _diag("LocalStack went away; exiting")
            try:
                os.killpg(0, signal.SIGKILL)
            finally:
                os._exit(1)


class _Capture:
    """Redirects fds 1 and 2 (and thus sys.stdout/sys.stderr) into the invocation log file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._saved: tuple[int, int] | None = None

    def start(self, first_line: str = "") -> None:
        _flush_std()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if first_line:
            os.write(fd, first_line.encode())
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def stop(self) -> str:
        _flush_std()
        if self._saved is not None:
            out, err = self._saved
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.close(out)
            os.close(err)
            self._saved = None
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return fh.read()


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _user_traceback(exc: BaseException) -> TracebackType | None:
    """The traceback without this bootstrap's own frames (AWS shows only the function's frames)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def _error_document(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc) if message is None else message,
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(_user_traceback(exc))),
    }


def _log_error(doc: dict[str, Any], exc: BaseException) -> None:
    # same shape as AWS's Python runtime: "[ERROR] ValueError: msg" + traceback, in the function's logs
    print(f"[ERROR] {doc['errorType']}: {doc['errorMessage']}", file=sys.stderr)
    traceback.print_exception(type(exc), exc, _user_traceback(exc), file=sys.stderr)


def _max_memory_mb() -> int:
    """Peak RSS of this process (VmHWM; ru_maxrss would include the forking LocalStack's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


class LambdaContext:
    """The subset of the AWS Lambda context object that handlers (and Powertools) use."""

    def __init__(self, request_id: str, invoked_arn: str, deadline_ms: float) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


def _set_sys_path() -> None:
    # AWS order: /var/task, /opt/python/lib/pythonX.Y/site-packages, /opt/python, /var/runtime, stdlib...
    front = [CODE_DIR, *EXTRA_PATHS]
    sys.path[:0] = [p for p in front if p not in sys.path]


def _load_handler() -> Any:
    spec = os.environ.get("_HANDLER", "")
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise _InitError(
            "Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as exc:
        raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


_invocations: queue.Queue[dict[str, Any]] = queue.Queue()


class _InvokeHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.rstrip("/") != "/invoke":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        _invocations.put(json.loads(body or b"{}"))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_invocation(handler: Any, invocation: dict[str, Any], capture: _Capture, init_logs: str,
                    init_ms: float | None) -> bool:
    """Run one invocation; returns False when the runtime must exit afterwards (sys.exit in the handler)."""
    request_id = str(invocation.get("invoke-id", ""))
    invoked_arn = str(invocation.get("invoked-function-arn", ""))
    raw_payload = invocation.get("payload") or ""
    os.environ["_X_AMZN_TRACE_ID"] = str(invocation.get("trace-id") or "")
    timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    context = LambdaContext(request_id, invoked_arn, time.time() * 1000 + timeout_s * 1000)
    keep_running = True
    capture.start(f"{init_logs}START RequestId: {request_id} Version: {version}\n")
    started = time.perf_counter()
    error: dict[str, Any] | None = None
    body = b""
    try:
        event = json.loads(raw_payload) if raw_payload else {}
        result = handler(event, context)
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            error = _error_document(exc, "Runtime.MarshalError", f"Unable to marshal response: {exc}")
            _log_error(error, exc)
    except SystemExit as exc:
        keep_running = False
        message = f"RequestId: {request_id} Error: Runtime exited with error: exit status {exc.code}"
        error = _error_document(exc, "Runtime.ExitError", message)
        _log_error(error, exc)
    except Exception as exc:
        error = _error_document(exc)
        _log_error(error, exc)
    duration_ms = (time.perf_counter() - started) * 1000
    logs = capture.stop()
    max_rss_mb = _max_memory_mb()
    report = (
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {int(duration_ms) + 1} ms\t"
        f"Memory Size: {os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE', '128')} MB\t"
        f"Max Memory Used: {max_rss_mb} MB"
        + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")
        + "\n"
    )
    logs = logs + ("" if logs.endswith("\n") else "\n") + report
    _post(f"/invocations/{request_id}/logs", json.dumps({"logs": logs}).encode())
    if error is None:
        _post(f"/invocations/{request_id}/response", body)
    else:
        error["requestId"] = request_id
        _post(f"/invocations/{request_id}/error", json.dumps(error).encode())
    return keep_running


def main() -> None:
    if not RUNTIME_ENDPOINT or not RUNTIME_ID:
        _diag("LOCALSTACK_RUNTIME_ENDPOINT / LOCALSTACK_RUNTIME_ID missing; not started by the executor?")
        sys.exit(2)
    threading.Thread(target=_watch_parent, name="coafi-parent-watch", daemon=True).start()
    _set_sys_path()
    capture = _Capture(INVOCATION_LOG or os.path.join(os.environ.get("TMPDIR", "/tmp"), "invocation.log"))

    init_started = time.perf_counter()
    capture.start()
    try:
        handler = _load_handler()
    except _InitError as exc:
        doc = _error_document(exc, exc.error_type, exc.message)
        _log_error(doc, exc.__cause__ or exc)
        init_output = capture.stop()
        _diag(f"init failed: {exc.error_type}: {exc.message}\n{init_output}")
        _post(f"/status/{RUNTIME_ID}/error", json.dumps(doc).encode())
        sys.exit(1)
    except BaseException as exc:  # an exception raised by the module's top-level code
        doc = _error_document(exc, f"Runtime.{type(exc).__name__}" if isinstance(exc, SystemExit) else None)
        _log_error(doc, exc)
        init_output = capture.stop()
        _diag(f"init failed: {doc['errorType']}: {doc['errorMessage']}\n{init_output}")
        _post(f"/status/{RUNTIME_ID}/error", json.dumps(doc).encode())
        sys.exit(1)
    init_logs = capture.stop()
    init_ms: float | None = (time.perf_counter() - init_started) * 1000

    server = http.server.HTTPServer(("127.0.0.1", 0), _InvokeHandler)
    threading.Thread(target=server.serve_forever, name="coafi-invoke-server", daemon=True).start()
    _post(f"/status/{RUNTIME_ID}/ready", json.dumps({"port": server.server_address[1]}).encode())

    while True:
        invocation = _invocations.get()
        if not _run_invocation(handler, invocation, capture, init_logs, init_ms):
            break
        init_logs, init_ms = "", None
    _flush_std()
    os._exit(1)


if __name__ == "__main__":
    main()
