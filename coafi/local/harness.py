"""The embedded local cloud: LocalStack (``localstack-core``) running on the host, without Docker or a token.

``up()`` installs it if needed (cached, see :mod:`coafi.local.install`), starts
``python -m localstack.runtime.main`` from its own venv in the background, waits for the services COAFI needs
and returns where it listens. ``down()`` stops what ``up()`` started, by PID. ``status()`` reports.

When ``AWS_ENDPOINT_URL`` points somewhere else than the embedded default (e.g. a LocalStack container with its
own auth token), nothing is installed or started: ``up()`` only checks that endpoint's health.

``coafi.local`` imports this module lazily, so ``import coafi.local`` stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, computed_field

from coafi.local import health, proc
from coafi.local.install import Installer, InstallError
from coafi.local.layout import LocalLayout

LOG = logging.getLogger("coafi.local")

HOST = "127.0.0.1"
#: Environment variable choosing the embedded LocalStack's port (default 4566), so two checkouts can each
#: run their own local cloud side by side.
PORT_ENV = "COAFI_LOCAL_PORT"


def _port_from_env() -> int:
    raw = os.environ.get(PORT_ENV, "").strip() or "4566"
    if not raw.isdigit() or not 1024 <= int(raw) <= 65535:
        raise ValueError(f"{PORT_ENV}={raw!r}: expected a TCP port number between 1024 and 65535")
    return int(raw)


PORT = _port_from_env()
DEFAULT_ENDPOINT = f"http://{HOST}:{PORT}"
DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
#: Name of the Lambda executor registered by the plugin (``LAMBDA_RUNTIME_EXECUTOR``).
LAMBDA_EXECUTOR = "coafi"

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOCK_TIMEOUT_S = 900.0  # a concurrent cold install may hold the lock for a minute or two


class LocalCloudError(RuntimeError):
    """The local cloud could not be installed, started, reached or stopped; the message says what to do."""


class LocalCloudInfo(BaseModel):
    """Where the local cloud listens and whether this call started it."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    pid: int | None
    started: bool
    log_file: Path | None
    embedded: bool = True
    region: str = DEFAULT_REGION


class LocalCloudStatus(BaseModel):
    """State of the local cloud: process (embedded mode) and per-service health."""

    model_config = ConfigDict(frozen=True)

    running: bool
    endpoint: str
    embedded: bool
    pid: int | None = None
    services: dict[str, str] = Field(default_factory=dict)
    not_ready: dict[str, str] = Field(default_factory=dict)
    version: str | None = None
    log_file: Path | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy(self) -> bool:
        """Running, and every service COAFI needs is ready."""
        return self.running and bool(self.services) and not self.not_ready


# ---- messages ---------------------------------------------------------------------------------------------
def _sayer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        LOG.info(message)
        if not quiet:
            print(f"coafi local: {message}", file=sys.stderr, flush=True)

    return say


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{tail}" if tail else f"(log {path} is empty)"


# ---- endpoint selection -----------------------------------------------------------------------------------
def configured_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The external endpoint to use instead of the embedded LocalStack, or ``None`` for embedded mode."""
    value = (os.environ if env is None else env).get(ENDPOINT_ENV, "").strip().rstrip("/")
    if not value or value == DEFAULT_ENDPOINT:
        return None
    return value


# ---- recorded process -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Record:
    pid: int
    start_time: int | None
    endpoint: str
    log_file: str

    def alive(self) -> bool:
        return proc.is_alive(self.pid, self.start_time)


def _read_record(layout: LocalLayout) -> _Record | None:
    try:
        doc = json.loads(layout.state_file.read_text())
        return _Record(int(doc["pid"]), doc.get("start_time"), str(doc["endpoint"]), str(doc["log_file"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:  # a bare PID file (e.g. written by hand): no start time to compare
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return _Record(pid, None, DEFAULT_ENDPOINT, str(layout.log_file))


def _write_record(layout: LocalLayout, record: _Record) -> None:
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.pid_file.write_text(f"{record.pid}\n")
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(layout.state_file)


def _clear_record(layout: LocalLayout) -> None:
    layout.state_file.unlink(missing_ok=True)
    layout.pid_file.unlink(missing_ok=True)


# ---- LocalStack process -----------------------------------------------------------------------------------
def localstack_environment(layout: LocalLayout, interpreters: Mapping[str, Path],
                           base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the LocalStack server process (host mode, offline, COAFI Lambda executor)."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        # nothing of the caller's Python/venv or AWS endpoint setup must leak into the server
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", ENDPOINT_ENV, "__PYVENV_LAUNCHER__")
    }
    env.update(
        {
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(layout.filesystem_root),
            "GATEWAY_LISTEN": f"{HOST}:{PORT}",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LAMBDA_RUNTIME_EXECUTOR": LAMBDA_EXECUTOR,
            "COAFI_LAMBDA_INTERPRETERS": json.dumps({rt: str(p) for rt, p in interpreters.items()}),
            "COAFI_LAMBDA_RUNTIME_SITE": str(layout.lambda_runtime_dir),
            # the plugin fires due EventBridge Scheduler schedules (LocalStack never does) on this clock
            "COAFI_CLOCK_FILE": str(layout.clock_file),
            "COAFI_SCHEDULES_STATE_FILE": str(layout.schedules_state_file),
            # unzipped Lambda code, temp files and plux' entry-point cache stay inside .coafi/
            "TMPDIR": str(layout.tmp_dir),
            "XDG_CACHE_HOME": str(layout.filesystem_root / "cache"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # LocalStack's config endpoint (POST /_localstack/config), for fault injection such as DynamoDB throttling
    # (DYNAMODB_WRITE_ERROR_PROBABILITY) in the e2e fault suite; the gateway listens on 127.0.0.1 only
    env.setdefault("ENABLE_CONFIG_UPDATES", "1")
    # DynamoDB Local's tables (and CloudWatch's metrics) on disk under localstack-fs/var/lib/localstack/state, so
    # they survive a restart as they would on AWS; community LocalStack keeps no other service state (Pro does)
    env.setdefault("PERSISTENCE", "1")
    return env


def _start_process(layout: LocalLayout, env: dict[str, str]) -> subprocess.Popen[bytes]:
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.tmp_dir.mkdir(parents=True, exist_ok=True)
    if layout.log_file.exists():
        layout.log_file.replace(layout.log_file.with_name(layout.log_file.name + ".1"))
    with open(layout.log_file, "ab") as log:
        log.write(f"=== coafi local: starting LocalStack at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        return subprocess.Popen(
            [str(layout.venv_python), "-m", "localstack.runtime.main"],
            cwd=layout.filesystem_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,  # own process group: not hit by the terminal's Ctrl-C, stopped by down()
        )


def _wait_ready(endpoint: str, timeout: float, alive: Callable[[], bool], log_file: Path | None) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        doc = health.fetch_health(endpoint)
        states = health.service_states(doc)
        if doc is not None and not health.not_ready(states):
            return states
        if not alive():
            tail = _log_tail(log_file) if log_file else ""
            raise LocalCloudError(f"LocalStack exited before it was ready.\n{tail}")
        if time.monotonic() >= deadline:
            missing = health.not_ready(states) if doc is not None else {"(health endpoint)": "unreachable"}
            tail = _log_tail(log_file) if log_file else ""
            raise LocalCloudError(
                f"LocalStack at {endpoint} not ready after {timeout:.0f} s; not ready: {missing}.\n{tail}"
            )
        time.sleep(0.2)


def _port_taken_message(layout: LocalLayout) -> str:
    owner = proc.port_owner(PORT)
    who = f"PID {owner} ({proc.cmdline(owner)[:200]})" if owner else "another process"
    is_localstack = health.fetch_health(DEFAULT_ENDPOINT) is not None
    hint = (
        f"It looks like a LocalStack not started by COAFI for {layout.project_root}: to use it, set "
        f"{ENDPOINT_ENV}=http://localhost:{PORT}; otherwise stop it"
        if is_localstack
        else "Stop it or free the port"
    )
    return f"Port {PORT} on {HOST} is already in use by {who}. {hint}, then run `coafi local up` again."


# ---- public API -------------------------------------------------------------------------------------------
def up(*, project_root: Path | None = None, timeout: float = START_TIMEOUT_S, quiet: bool = False) -> LocalCloudInfo:
    """Make the local cloud available and return where it listens (idempotent).

    Embedded mode (``AWS_ENDPOINT_URL`` unset or ``http://127.0.0.1:4566``): install LocalStack and its offline
    supplies under ``<project_root>/.coafi/`` if needed, start it in the background unless it already runs,
    and wait until the required services are ready. External mode (any other ``AWS_ENDPOINT_URL``): only
    check that endpoint's health. Raises :class:`LocalCloudError` with an actionable message.
    """
    say = _sayer(quiet)
    external = configured_endpoint()
    if external is not None:
        doc = health.fetch_health(external, timeout=5.0)
        if doc is None:
            raise LocalCloudError(
                f"{ENDPOINT_ENV}={external} does not answer {health.HEALTH_PATH}. Start that LocalStack, or unset "
                f"{ENDPOINT_ENV} to use the embedded one."
            )
        missing = health.not_ready(health.service_states(doc))
        if missing:
            raise LocalCloudError(f"LocalStack at {external} lacks services COAFI needs: {missing}")
        say(f"using the LocalStack at {external} ({ENDPOINT_ENV}); nothing started")
        return LocalCloudInfo(endpoint=external, pid=None, started=False, log_file=None, embedded=False)

    layout = LocalLayout.for_root(project_root)
    started_at = time.monotonic()
    try:
        with proc.file_lock(layout.lock_file, LOCK_TIMEOUT_S):
            return _up_locked(layout, timeout, say, started_at)
    except proc.LockTimeout as exc:
        raise LocalCloudError(f"Another `coafi local up` holds {layout.lock_file}: {exc}") from exc


def _up_locked(layout: LocalLayout, timeout: float, say: Callable[[str], None], t0: float) -> LocalCloudInfo:
    record = _read_record(layout)
    if record is not None and record.alive():
        _wait_ready(DEFAULT_ENDPOINT, timeout, record.alive, Path(record.log_file))
        say(f"LocalStack already running at {DEFAULT_ENDPOINT} (PID {record.pid})")
        if Installer(layout, say).plugin_outdated():
            say("the COAFI LocalStack plugin changed since this LocalStack started: "
                "run `coafi local down` then `coafi local up` to use the new one")
        return LocalCloudInfo(endpoint=DEFAULT_ENDPOINT, pid=record.pid, started=False, log_file=Path(record.log_file))
    if record is not None:
        _clear_record(layout)  # stale: the process is gone (or the PID was recycled)
        if proc.orphans_referencing(layout.coafi_dir):
            say("the previous LocalStack of this project did not stop cleanly; cleaning up after it")
            _kill_leftovers(layout, say)

    if proc.port_open(HOST, PORT):
        raise LocalCloudError(_port_taken_message(layout))

    try:
        installation = Installer(layout, say).ensure()
    except InstallError as exc:
        raise LocalCloudError(
            f"Installing the embedded LocalStack under {layout.coafi_dir} failed:\n{exc}\n"
            "Fix the cause and run `coafi local up` again (finished steps are kept)."
        ) from exc

    say(f"starting LocalStack on {DEFAULT_ENDPOINT} (log: {layout.log_file})")
    env = localstack_environment(layout, installation.lambda_interpreters)
    process = _start_process(layout, env)
    record = _Record(process.pid, proc.start_time(process.pid), DEFAULT_ENDPOINT, str(layout.log_file))
    _write_record(layout, record)
    try:
        _wait_ready(DEFAULT_ENDPOINT, timeout, lambda: process.poll() is None, layout.log_file)
    except LocalCloudError:
        _stop_pid(record, STOP_TIMEOUT_S, say)
        _clear_record(layout)
        raise
    say(f"LocalStack ready at {DEFAULT_ENDPOINT} (PID {process.pid}) in {time.monotonic() - t0:.1f} s")
    return LocalCloudInfo(endpoint=DEFAULT_ENDPOINT, pid=process.pid, started=True, log_file=layout.log_file)


def _stop_pid(record: _Record, timeout: float, say: Callable[[str], None]) -> None:
    """SIGTERM, wait, SIGKILL - by PID - then kill whatever of its process tree survived (by PID)."""
    pid, started = record.pid, record.start_time
    tree: dict[int, int] = {}

    def collect() -> None:
        if proc.is_alive(pid, started):
            tree.update(proc.descendants(pid))

    collect()
    if proc.send_signal(pid, signal.SIGTERM, started):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            collect()  # Lambda processes / DynamoDB Local started late are tracked too
            proc.reap(pid)
            if not proc.is_alive(pid, started):
                break
            time.sleep(0.2)
        else:
            say(f"LocalStack (PID {pid}) did not stop within {timeout:.0f} s; sending SIGKILL")
            proc.send_signal(pid, signal.SIGKILL, started)
            proc.wait_gone(pid, started, 5.0)
    # its process group (start_new_session: group id == PID), e.g. DynamoDB Local
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    survivors = [p for p, st in tree.items() if proc.is_alive(p, st)]
    for child in survivors:
        LOG.info("killing leftover child process %s (%s)", child, proc.cmdline(child)[:120])
        proc.send_signal(child, signal.SIGKILL, tree[child])
    for child in survivors:
        proc.wait_gone(child, tree[child], 5.0)


def _kill_leftovers(layout: LocalLayout, say: Callable[[str], None]) -> bool:
    """Kill, by PID, orphans of a LocalStack of this project that died without ``down`` (e.g. DynamoDB Local).

    Only processes re-parented to init whose command line names this project's ``.coafi/`` folder qualify.
    """
    leftovers = proc.orphans_referencing(layout.coafi_dir)
    for pid, started in leftovers.items():
        say(f"stopping leftover process PID {pid} ({proc.cmdline(pid)[:100]})")
        proc.send_signal(pid, signal.SIGTERM, started)
    for pid, started in leftovers.items():
        if not proc.wait_gone(pid, started, 5.0):
            proc.send_signal(pid, signal.SIGKILL, started)
            proc.wait_gone(pid, started, 5.0)
    return bool(leftovers)


def down(*, project_root: Path | None = None, timeout: float = STOP_TIMEOUT_S, quiet: bool = False) -> bool:
    """Stop the embedded LocalStack started by :func:`up` for this project (by PID). True if it stopped anything.

    SIGTERM, up to ``timeout`` s, SIGKILL; then whatever survived of its process tree (Lambda processes,
    DynamoDB Local), by PID. After a crash of LocalStack it stops the orphans it left (processes re-parented
    to init whose command line names this project's ``.coafi/``). Never touches an external endpoint
    (``AWS_ENDPOINT_URL``) nor any other process.
    """
    say = _sayer(quiet)
    layout = LocalLayout.for_root(project_root)
    try:
        with proc.file_lock(layout.lock_file, LOCK_TIMEOUT_S):
            record = _read_record(layout)
            if record is None or not record.alive():
                _clear_record(layout)
                leftovers = _kill_leftovers(layout, say)
                if not leftovers:
                    say("LocalStack is not running (nothing to stop)")
                return leftovers
            say(f"stopping LocalStack (PID {record.pid})")
            _stop_pid(record, timeout, say)
            if record.alive():
                raise LocalCloudError(f"LocalStack (PID {record.pid}) is still running after SIGKILL")
            _clear_record(layout)
            say("LocalStack stopped")
            return True
    except proc.LockTimeout as exc:
        raise LocalCloudError(f"Another `coafi local` command holds {layout.lock_file}: {exc}") from exc


def status(*, project_root: Path | None = None) -> LocalCloudStatus:
    """Process and per-service health of the local cloud (embedded, or external via ``AWS_ENDPOINT_URL``)."""
    external = configured_endpoint()
    if external is not None:
        doc = health.fetch_health(external)
        states = health.service_states(doc)
        return LocalCloudStatus(
            running=doc is not None,
            endpoint=external,
            embedded=False,
            services=states,
            not_ready=health.not_ready(states) if doc is not None else {},
            version=str(doc.get("version")) if doc and doc.get("version") else None,
        )
    layout = LocalLayout.for_root(project_root)
    record = _read_record(layout)
    alive = record is not None and record.alive()
    doc = health.fetch_health(DEFAULT_ENDPOINT) if alive else None
    states = health.service_states(doc)
    return LocalCloudStatus(
        running=alive,
        endpoint=DEFAULT_ENDPOINT,
        embedded=True,
        pid=record.pid if record is not None and alive else None,
        services=states,
        not_ready=health.not_ready(states) if doc is not None else {},
        version=str(doc.get("version")) if doc and doc.get("version") else None,
        log_file=layout.log_file if layout.log_file.exists() else None,
    )
