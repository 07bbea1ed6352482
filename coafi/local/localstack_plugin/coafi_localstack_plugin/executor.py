"""LocalStack Lambda runtime executor that runs Python handlers as host subprocesses (no Docker).

One execution environment = one ``bootstrap.py`` process in the interpreter of the function's runtime, started in
its own process group. LocalStack keeps it warm between invocations (``LAMBDA_KEEPALIVE_MS``). This executor:

* prepares the unzipped code and layers (``prepare_version``); invocations of functions with an unsupported
  runtime or an image package fail with a clear ``Runtime.InvalidRuntime`` function error;
* builds the environment of the process (LocalStack's Lambda variables, the function's variables, credentials,
  ``AWS_ENDPOINT_URL`` of the gateway, ``LAMBDA_TASK_ROOT`` = the unzipped code dir, a private ``TMPDIR``);
* enforces the function timeout: on expiry the process group is killed and the invocation fails with
  ``Sandbox.Timedout`` (``RequestId: ... Error: Task timed out after N.00 seconds``) like AWS; the next
  invocation starts a fresh process (a new cold start, as AWS resets the sandbox);
* reports a crash of the process during an invocation as ``Runtime.ExitError``;
* caps concurrent environment starts and queues invocations for a warm environment or a start slot
  (``install_environment_gate``, see ``concurrency.py``; ``COAFI_LAMBDA_MAX_STARTS``, default one per CPU;
  ``COAFI_LAMBDA_MAX_ENVIRONMENTS`` per function version, default two per CPU).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.assignment import AssignmentService
from localstack.services.lambda_.invocation.execution_environment import (
    ExecutionEnvironment,
    InvalidStatusException,
    RuntimeStatus,
)
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InitializationType,
    InvocationResult,
)
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor
from werkzeug import Request

from coafi_localstack_plugin.concurrency import EnvironmentGate, max_environments_from_env, max_starts_from_env
from coafi_localstack_plugin.runtimes import UnsupportedRuntimeError, resolve_interpreter, supported_runtimes

LOG = logging.getLogger(__name__)

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
RUNTIME_SITE_ENV = "COAFI_LAMBDA_RUNTIME_SITE"
WORK_ROOT = Path(tempfile.gettempdir()) / "coafi-lambda"
KILL_GRACE_S = 1.0
IMAGE_UNSUPPORTED = (
    "Container-image Lambda functions are not supported by the COAFI local executor "
    f"(supported: zip packages with {', '.join(supported_runtimes())})"
)


class ProcessExecutorEndpoint(ExecutorEndpoint):
    """LocalStack's executor endpoint; the bootstrap reports its invoke port in the ready call."""

    def status_ready(self, request: Request, executor_id: str) -> Response:
        try:
            body = json.loads(request.data or b"{}")
            if isinstance(body, dict) and body.get("port"):
                self.container_port = int(body["port"])
        except ValueError:
            LOG.warning("Executor %s: ready call without a valid port: %r", executor_id, request.data)
        return super().status_ready(request, executor_id)

    def invocation_response(self, request: Request, req_id: str) -> Response:
        return self._resolve(request, req_id, is_error=False)

    def invocation_error(self, request: Request, req_id: str) -> Response:
        return self._resolve(request, req_id, is_error=True)

    def _resolve(self, request: Request, req_id: str, *, is_error: bool) -> Response:
        future = self.invocation_future
        if future is None or future.done():  # the executor already failed this invocation (e.g. timeout)
            return Response(status=HTTPStatus.GONE)
        result = InvocationResult(req_id, request.data, is_error=is_error, logs=self.logs)
        try:
            future.set_result(result)
        except Exception:  # InvalidStateError: lost a race with the timeout / crash path
            return Response(status=HTTPStatus.GONE)
        return Response(status=HTTPStatus.ACCEPTED)


def _iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _kill_group(process: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """Stop the environment's process group (the bootstrap and anything the handler started), by PID."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    # children of the handler may survive the bootstrap: the group id is the bootstrap's PID
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        LOG.warning("Lambda runtime process %s did not exit after SIGKILL", process.pid)


class CoafiProcessRuntimeExecutor(RuntimeExecutor):
    executor_endpoint: ProcessExecutorEndpoint

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ProcessExecutorEndpoint(self.id, container_address="127.0.0.1")
        self._process: subprocess.Popen[bytes] | None = None
        self._env_vars: dict[str, str] = {}
        self._invoke_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending: tuple[subprocess.Popen[bytes], str] | None = None  # process, request id
        self._stopped = False
        self._work_dir = WORK_ROOT / self.id
        self._tmp_dir = self._work_dir / "tmp"
        self._process_log = self._work_dir / "process.log"
        self._invocation_log = self._work_dir / "invocation.log"

    # ---- addresses ---------------------------------------------------------------------------------
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        if config.HOSTNAME_FROM_LAMBDA:
            return str(config.HOSTNAME_FROM_LAMBDA)
        host = str(config.GATEWAY_LISTEN[0].host)
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}{self.executor_endpoint.get_endpoint_prefix()}"

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        self._env_vars = {k: str(v) for k, v in env_vars.items()}
        self.executor_endpoint.start()
        self._spawn_and_wait()

    def stop(self) -> None:
        with self._state_lock:
            self._stopped = True
            process = self._process
        if process is not None:
            _kill_group(process)
        try:
            self.executor_endpoint.shutdown()
        except Exception as exc:
            LOG.debug("Error while shutting down executor endpoint %s: %s", self.id, exc)
        shutil.rmtree(self._work_dir, ignore_errors=True)

    def get_logs(self) -> str:
        try:
            return self._process_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # ---- process management ------------------------------------------------------------------------
    def _code_dir(self) -> Path:
        code = self.function_version.config.code
        if code is None:
            raise LambdaRuntimeException(f"Function {self.function_version.qualified_arn} has no code package")
        return Path(code.get_unzipped_code_location())

    def _extra_sys_path(self, runtime: str) -> list[str]:
        """Layers (a later layer wins, as when AWS extracts them in order into /opt), then the runtime site."""
        paths: list[str] = []
        minor = runtime.removeprefix("python")
        for layer in reversed(self.function_version.config.layers or []):
            if layer.code is None:
                continue
            root = Path(layer.code.get_unzipped_code_location())
            for candidate in (root / "python" / "lib" / f"python{minor}" / "site-packages", root / "python"):
                if candidate.is_dir():
                    paths.append(str(candidate))
        site_root = os.environ.get(RUNTIME_SITE_ENV, "")
        if site_root and (Path(site_root) / runtime).is_dir():
            paths.append(str(Path(site_root) / runtime))
        return paths

    def _build_env(self, runtime: str, code_dir: Path) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self._tmp_dir),
            "TMPDIR": str(self._tmp_dir),
            # keep the host's ~/.aws out of the function (credentials come from the environment below)
            "AWS_CONFIG_FILE": str(self._tmp_dir / ".aws-config-unused"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self._tmp_dir / ".aws-credentials-unused"),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        }
        env.update(self._env_vars)
        env.setdefault("AWS_ACCESS_KEY_ID", "test")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        if not config.LAMBDA_DISABLE_AWS_ENDPOINT_URL:
            env.setdefault(
                "AWS_ENDPOINT_URL", f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
            )
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
        env["LAMBDA_RUNTIME_DIR"] = str(BOOTSTRAP.parent)
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{config.GATEWAY_LISTEN[0].port}"
        env["_COAFI_CODE_DIR"] = str(code_dir)
        env["_COAFI_SYS_PATH"] = os.pathsep.join(self._extra_sys_path(runtime))
        env["_COAFI_INVOCATION_LOG"] = str(self._invocation_log)
        env["_COAFI_PARENT_PID"] = str(os.getpid())
        return env

    def _spawn_and_wait(self) -> None:
        runtime = str(self.function_version.config.runtime or "")
        try:
            if self.function_version.config.package_type != PackageType.Zip:
                raise UnsupportedRuntimeError(IMAGE_UNSUPPORTED)
            interpreter = resolve_interpreter(runtime or None)
        except UnsupportedRuntimeError as exc:
            # reported like an init error: the invocation fails with this message as a function error
            error = {"errorType": "Runtime.InvalidRuntime", "errorMessage": str(exc)}
            raise StatusErrorException(str(exc), payload=json.dumps(error).encode()) from exc
        code_dir = self._code_dir()
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        env = self._build_env(runtime, code_dir)
        with self._state_lock:
            if self._stopped:
                raise ShutdownDuringStartup("Executor environment stopped before the runtime process started")
            with open(self._process_log, "ab") as log:
                process = subprocess.Popen(
                    [str(interpreter), "-u", "-s", "-P", str(BOOTSTRAP)],
                    cwd=code_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    start_new_session=True,
                )
            self._process = process
        LOG.debug(
            "Started Lambda runtime process %s for %s (%s, %s)",
            process.pid, self.function_version.qualified_arn, runtime, interpreter,
        )
        threading.Thread(
            target=self._watch_process, args=(process,), name=f"coafi-lambda-watch-{self.id[:8]}", daemon=True
        ).start()

        startup = self.executor_endpoint.startup_future
        assert startup is not None
        while True:
            try:
                startup.result(timeout=0.05)
                return
            except FutureTimeoutError:
                pass
            except CancelledError as exc:
                _kill_group(process)
                raise ShutdownDuringStartup("Executor environment shut down during startup") from exc
            if process.poll() is not None and not startup.done():
                raise LambdaRuntimeException(
                    f"Lambda runtime process for {self.function_version.qualified_arn} exited with code "
                    f"{process.returncode} before it was ready. Process log:\n{self._tail(self._process_log)}"
                )

    def _watch_process(self, process: subprocess.Popen[bytes]) -> None:
        """Fail the pending invocation when the runtime process dies during it (crash, os._exit, OOM...)."""
        returncode = process.wait()
        time.sleep(0.2)  # let a response/error posted right before exiting arrive first
        future = self.executor_endpoint.invocation_future
        pending = self._pending
        if pending is None or pending[0] is not process or future is None or future.done():
            return  # not during an invocation of this process (a later process may be serving one)
        request_id = pending[1]
        status = f"signal: {signal.Signals(-returncode).name}" if returncode < 0 else f"exit status {returncode}"
        error = {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {status}",
        }
        logs = self._read_invocation_log() + f"{error['errorMessage']}\nEND RequestId: {request_id}\n"
        with contextlib.suppress(Exception):  # InvalidStateError: the response won the race
            future.set_result(InvocationResult(request_id, json.dumps(error).encode(), is_error=True, logs=logs))

    # ---- invocations -------------------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        with self._invoke_lock:
            request_id = str(payload.get("invoke-id", ""))
            process = self._process
            if process is None or process.poll() is not None:
                # the previous sandbox was torn down (timeout, crash): initialise a fresh one, as AWS does
                self.executor_endpoint.startup_future = Future()
                gate = _GATE
                slot = f"restart:{self.id}"
                if gate is not None:  # a cold start like any other: wait for a start slot
                    gate.admit(slot, lambda: None)
                try:
                    self._spawn_and_wait()
                except StatusErrorException as exc:
                    return InvocationResult(request_id, exc.payload, is_error=True, logs=self._read_invocation_log())
                finally:
                    if gate is not None:
                        gate.start_finished(slot)
                process = self._process
            assert process is not None
            return self._invoke_running(process, request_id, payload)

    def _invoke_running(
        self, process: subprocess.Popen[bytes], request_id: str, payload: dict[str, str]
    ) -> InvocationResult:
        endpoint = self.executor_endpoint
        future: Future[InvocationResult] = Future()
        endpoint.invocation_future = future
        endpoint.logs = None
        self._pending = (process, request_id)
        timeout_s = float(self.function_version.config.timeout or 3)
        started = time.monotonic()
        try:
            self._send(payload)
            try:
                return future.result(timeout=max(0.0, timeout_s - (time.monotonic() - started)))
            except FutureTimeoutError:
                return self._time_out(request_id, timeout_s, future)
        finally:
            self._pending = None

    def _send(self, payload: dict[str, str]) -> None:
        """POST the invocation to the environment's runtime (plain HTTP on loopback). http.client, not urllib's
        opener: building one creates an SSL context, ~20 ms of CPU per invocation."""
        connection = http.client.HTTPConnection("127.0.0.1", self.executor_endpoint.container_port, timeout=10)
        try:
            connection.request("POST", "/invoke", body=json.dumps(payload).encode(),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status >= 400:
                raise LambdaRuntimeException(f"the runtime refused the invocation: HTTP {response.status}")
        finally:
            connection.close()

    def _time_out(self, request_id: str, timeout_s: float, future: Future[InvocationResult]) -> InvocationResult:
        process = self._process
        if process is not None:
            _kill_group(process, grace_s=0.0)
        if future.done() and not future.cancelled():  # the result raced the timer: keep it
            return future.result()
        message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
        error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
        logs = (
            self._read_invocation_log()
            + f"{_iso_now()} {request_id} Task timed out after {timeout_s:.2f} seconds\n"
            + f"END RequestId: {request_id}\n"
            + f"REPORT RequestId: {request_id}\tDuration: {timeout_s * 1000:.2f} ms\t"
            + f"Billed Duration: {int(timeout_s * 1000)} ms\t"
            + f"Memory Size: {self.function_version.config.memory_size} MB\tStatus: timeout\n"
        )
        LOG.info("Lambda %s timed out after %.2f s (request %s)", self.function_version.qualified_arn,
                 timeout_s, request_id)
        result = InvocationResult(request_id, json.dumps(error).encode(), is_error=True, logs=logs)
        with contextlib.suppress(Exception):
            future.set_result(result)
        return result

    def _read_invocation_log(self) -> str:
        try:
            text = self._invocation_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text if not text or text.endswith("\n") else text + "\n"

    @staticmethod
    def _tail(path: Path, lines: int = 40) -> str:
        try:
            return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no process log)"

    # ---- versions ----------------------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # An unsupported runtime does not fail the version here: LocalStack cannot delete a function whose
        # version failed to prepare ("Unable to find version manager"), which would also block stack deletes.
        # Its invocations fail instead, with the reason as a Runtime.InvalidRuntime function error.
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip:
            LOG.warning("%s: %s", function_version.qualified_arn, IMAGE_UNSUPPORTED)
            return
        try:
            resolve_interpreter(cfg.runtime)
        except UnsupportedRuntimeError as exc:
            LOG.warning("%s: %s", function_version.qualified_arn, exc)
            return
        if cfg.code is not None:
            cfg.code.prepare_for_execution()
        for layer in cfg.layers or []:
            if layer.code is not None:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        # called once by LocalStack's Lambda provider when it starts with this executor selected
        install_environment_gate()
        for runtime in supported_runtimes():
            try:
                LOG.debug("COAFI local Lambda executor: %s -> %s", runtime, resolve_interpreter(runtime))
            except UnsupportedRuntimeError as exc:
                LOG.warning("COAFI local Lambda executor: %s", exc)
        return True



# ---- admission of invocations to environments (LocalStack's AssignmentService) ----------------------------------
_GATE: EnvironmentGate | None = None
_LIVE = (RuntimeStatus.INACTIVE, RuntimeStatus.STARTING, RuntimeStatus.READY, RuntimeStatus.INVOKING)


def install_environment_gate() -> EnvironmentGate:
    """Replace LocalStack's on-demand environment assignment by one that goes through an :class:`EnvironmentGate`.

    LocalStack starts an environment for every invocation that finds none idle, up to 16 at once; here each is a
    Python process on the host's few cores. Gated, an invocation takes an idle environment of its function
    version if there is one, else starts one if fewer than ``COAFI_LAMBDA_MAX_STARTS`` are starting and its
    version has fewer than ``COAFI_LAMBDA_MAX_ENVIRONMENTS``, else waits (in arrival order) for either.
    Provisioned-concurrency assignment is left as LocalStack does it. Idempotent.
    """
    global _GATE
    if _GATE is not None:
        return _GATE
    gate = EnvironmentGate(max_starts_from_env(), max_environments_from_env())
    original = AssignmentService.get_environment

    @contextlib.contextmanager
    def get_environment(
        self: AssignmentService,
        version_manager_id: str,
        function_version: FunctionVersion,
        provisioning_type: InitializationType,
    ) -> Iterator[ExecutionEnvironment]:
        if provisioning_type != InitializationType.on_demand:
            with original(self, version_manager_id, function_version, provisioning_type) as provisioned:
                yield provisioned
            return

        def try_reserve() -> ExecutionEnvironment | None:
            for candidate in list(self.environments[version_manager_id].values()):
                if candidate.initialization_type != provisioning_type:
                    continue
                try:
                    candidate.reserve()
                    return candidate
                except InvalidStatusException:
                    pass
            return None

        def count() -> int:  # environments that serve or will serve invocations (a stopped one left behind: no)
            return sum(1 for e in list(self.environments[version_manager_id].values()) if e.status in _LIVE)

        warm = gate.admit(version_manager_id, try_reserve, count)
        if warm is not None:
            environment = warm
        else:  # this invocation holds a start slot
            try:
                environment = self.start_environment(version_manager_id, function_version)
                self.environments[version_manager_id][environment.id] = environment
                environment.reserve()
            finally:
                gate.start_finished(version_manager_id)  # after it is counted: the cap never sees it missing
        # from here on as LocalStack's own get_environment, plus waking the queue when the environment is free
        try:
            yield environment
            environment.release()
        except InvalidStatusException as invalid_e:
            LOG.error("InvalidStatusException: %s", invalid_e)
        except Exception as e:
            LOG.error("Failed invocation <%s>: %s", type(e), e, exc_info=LOG.isEnabledFor(logging.DEBUG))
            self.stop_environment(environment)
            raise
        finally:
            gate.released()

    AssignmentService.get_environment = get_environment  # type: ignore[method-assign]
    _GATE = gate
    LOG.info("coafi: Lambda environments start at most %d at a time, at most %s per function version; other "
             "invocations queue for a warm one", gate.max_starts, gate.max_environments)
    return gate
