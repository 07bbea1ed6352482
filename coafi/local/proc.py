"""Process helpers for the local cloud: PID identity, process trees, port owners, a file lock (Linux, stdlib).

Everything here works on explicit PIDs (never on process names): a PID is identified together with its start
time (``/proc/<pid>/stat`` field 22) so that a recycled PID is never mistaken for the process we started.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." - comm may contain spaces and parentheses: split after the last ')'
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, ``None`` when there is no such process."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


def is_alive(pid: int, started: int | None = None) -> bool:
    """``pid`` exists, is not a zombie and (when given) has the recorded start time."""
    current = start_time(pid)
    if current is None or is_zombie(pid):
        return False
    return started is None or current == started


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and len(fields) > 1:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> dict[int, int]:
    """All living descendants of ``pid`` as ``{pid: start_time}``."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_map().items():
        children.setdefault(parent, []).append(child)
    found: dict[int, int] = {}
    stack = list(children.get(pid, []))
    while stack:
        current = stack.pop()
        started = start_time(current)
        if started is None or current in found:
            continue
        found[current] = started
        stack.extend(children.get(current, []))
    return found


def orphans_referencing(path: Path) -> dict[int, int]:
    """Processes re-parented to init whose command line names ``path`` (leftovers of a crashed server)."""
    needle = str(path)
    found: dict[int, int] = {}
    for pid, parent in _parent_map().items():
        if parent == 1 and pid != os.getpid() and needle in cmdline(pid):
            started = start_time(pid)
            if started is not None and not is_zombie(pid):
                found[pid] = started
    return found


def send_signal(pid: int, sig: signal.Signals, started: int | None = None) -> bool:
    """Signal ``pid`` only if it is still the process identified by ``started``; True if delivered."""
    if not is_alive(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (avoids zombies when the harness process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError as exc:
        if exc.errno != errno.ECHILD:
            raise


def wait_gone(pid: int, started: int | None, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        reap(pid)
        if not is_alive(pid, started):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(inode)
    return inodes


def port_owner(port: int) -> int | None:
    """PID of the process listening on TCP ``port`` (best effort; needs permission to read its fds)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) in targets:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


class LockTimeout(Exception):
    pass


@contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if needed), waiting up to ``timeout`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"could not lock {path} within {timeout:.0f} s") from exc
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
