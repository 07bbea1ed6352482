"""The local Lambda executor's admission gate: warm reuse first, at most N environments starting, FIFO queueing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from coafi.local.localstack_plugin.coafi_localstack_plugin.concurrency import (
    MAX_ENVIRONMENTS_ENV,
    MAX_STARTS_ENV,
    EnvironmentGate,
    default_max_environments,
    default_max_starts,
    max_environments_from_env,
    max_starts_from_env,
)


class Pool:
    """Environments of one function version: a reserve() like LocalStack's (idle -> busy), release()."""

    def __init__(self, gate: EnvironmentGate) -> None:
        self.gate = gate
        self.idle: list[str] = []
        self.started = 0
        self.lock = threading.Lock()

    def try_reserve(self) -> str | None:
        with self.lock:
            return self.idle.pop() if self.idle else None

    def invoke(self, key: str, work: Callable[[str], None], on_start: Callable[[], None] = lambda: None) -> str:
        env = self.gate.admit(key, self.try_reserve, lambda: self.started)
        if env is None:
            try:
                on_start()
                with self.lock:
                    self.started += 1
                    env = f"env-{self.started}"
            finally:
                self.gate.start_finished(key)
        work(env)
        with self.lock:
            self.idle.append(env)
        self.gate.released()
        return env


def test_the_cap_comes_from_the_environment_or_the_cpus() -> None:
    assert max_starts_from_env({MAX_STARTS_ENV: "3"}) == 3
    assert max_starts_from_env({MAX_STARTS_ENV: " "}) == default_max_starts() >= 1
    assert max_starts_from_env({}) == default_max_starts()
    with pytest.raises(ValueError, match=f"{MAX_STARTS_ENV}='two' is not an integer"):
        max_starts_from_env({MAX_STARTS_ENV: "two"})
    with pytest.raises(ValueError, match="must be at least 1"):
        max_starts_from_env({MAX_STARTS_ENV: "0"})
    with pytest.raises(ValueError, match="at least 1"):
        EnvironmentGate(0)
    assert max_environments_from_env({MAX_ENVIRONMENTS_ENV: "5"}) == 5
    assert max_environments_from_env({}) == default_max_environments() == 2 * default_max_starts()
    with pytest.raises(ValueError, match=f"{MAX_ENVIRONMENTS_ENV}='-1' must be at least 1"):
        max_environments_from_env({MAX_ENVIRONMENTS_ENV: "-1"})
    with pytest.raises(ValueError, match="at least 1"):
        EnvironmentGate(1, 0)


def test_an_idle_environment_is_reused_without_a_start() -> None:
    gate = EnvironmentGate(2)
    pool = Pool(gate)
    first = pool.invoke("fn", lambda env: None)
    second = pool.invoke("fn", lambda env: None)
    assert first == second == "env-1"
    assert pool.started == 1
    assert gate.stats.admitted_warm == 1 and gate.stats.admitted_to_start == 1


def test_no_more_than_the_cap_start_at_once_and_every_invocation_runs() -> None:
    gate = EnvironmentGate(2, poll_s=0.01)
    pool = Pool(gate)
    release_starts = threading.Event()
    starting_now: list[int] = []
    lock = threading.Lock()
    done: list[str] = []

    def on_start() -> None:
        with lock:
            starting_now.append(gate.starting)
        release_starts.wait(5)

    def one() -> None:
        done.append(pool.invoke("fn", lambda env: None, on_start))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    # two starts are in progress; the other 18 invocations wait for an environment, none starts a third
    while len(starting_now) < 2:
        threading.Event().wait(0.01)
    assert gate.starting == 2
    while gate.waiting < 18:
        threading.Event().wait(0.01)
    assert gate.starting == 2 and len(starting_now) == 2
    release_starts.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert len(done) == 20
    assert max(starting_now) <= 2 and gate.stats.max_starting == 2
    # the queued invocations were served by warm environments, not 20 cold starts
    assert pool.started < 20
    assert gate.stats.admitted_warm + gate.stats.admitted_to_start == 20
    assert gate.stats.queued >= 18
    assert gate.starting == 0 and gate.waiting == 0


def test_a_function_version_is_served_in_arrival_order() -> None:
    gate = EnvironmentGate(1, poll_s=0.01)
    pool, other = Pool(gate), Pool(gate)
    pool.invoke("fn", lambda env: None)  # one warm environment, now idle
    hold_slot, hold_env = threading.Event(), threading.Event()
    # the only start slot is taken by another function's start, the only environment by a long invocation:
    # everything that arrives now queues, and then goes through the one environment one at a time
    slot = threading.Thread(target=other.invoke, args=("other", lambda env: None),
                            kwargs={"on_start": lambda: hold_slot.wait(5)})
    slot.start()
    busy = threading.Thread(target=pool.invoke, args=("fn", lambda env: hold_env.wait(5)))
    busy.start()
    while gate.starting < 1 or pool.idle:
        threading.Event().wait(0.01)
    order: list[int] = []
    arrivals: list[threading.Thread] = []
    for i in range(5):
        t = threading.Thread(target=pool.invoke, args=("fn", lambda env, i=i: order.append(i)))
        t.start()
        arrivals.append(t)
        while gate.waiting < i + 1:  # make the arrival order certain
            threading.Event().wait(0.01)
    hold_env.set()
    for t in arrivals:
        t.join(timeout=10)
        assert not t.is_alive()
    assert order == [0, 1, 2, 3, 4]
    assert pool.started == 1
    hold_slot.set()
    busy.join(timeout=10)
    slot.join(timeout=10)
    assert gate.starting == 0 and gate.waiting == 0


def test_a_failed_start_gives_its_slot_back() -> None:
    gate = EnvironmentGate(1, poll_s=0.01)
    pool = Pool(gate)

    def boom() -> None:
        raise RuntimeError("runtime process exited before it was ready")

    with pytest.raises(RuntimeError, match="before it was ready"):
        pool.invoke("fn", lambda env: None, on_start=boom)
    assert gate.starting == 0 and gate.waiting == 0
    assert pool.invoke("fn", lambda env: None) == "env-1"
    with pytest.raises(RuntimeError, match="without a start slot"):
        gate.start_finished("fn")


def test_one_function_waiting_for_a_slot_does_not_hold_back_another_with_an_idle_environment() -> None:
    gate = EnvironmentGate(1, poll_s=0.01)
    a, b = Pool(gate), Pool(gate)
    b.invoke("b", lambda env: None)  # b has an idle environment
    hold = threading.Event()
    t = threading.Thread(target=a.invoke, args=("a", lambda env: None), kwargs={"on_start": lambda: hold.wait(5)})
    t.start()
    while gate.starting < 1:
        threading.Event().wait(0.01)
    t2 = threading.Thread(target=a.invoke, args=("a", lambda env: None))
    t2.start()
    while gate.waiting < 1:
        threading.Event().wait(0.01)
    # "a" has one start running and one invocation queued; "b" still goes straight to its warm environment
    assert b.invoke("b", lambda env: None) == "env-1"
    hold.set()
    t.join(timeout=10)
    t2.join(timeout=10)
    assert not t.is_alive() and not t2.is_alive()
    assert a.started == 1  # the queued "a" invocation reused the environment the first one started


def test_a_function_version_at_its_environment_cap_queues_for_a_warm_one_and_leaves_slots_to_others() -> None:
    gate = EnvironmentGate(4, max_environments=2, poll_s=0.01)
    fn, other = Pool(gate), Pool(gate)
    hold = threading.Event()
    used: list[str] = []

    def work(env: str) -> None:
        hold.wait(5)
        used.append(env)

    threads = [threading.Thread(target=fn.invoke, args=("fn", work)) for _ in range(6)]
    for t in threads:
        t.start()
    while gate.waiting < 4 or fn.started < 2:  # two environments busy, four invocations queued behind them
        threading.Event().wait(0.01)
    assert fn.started == 2 and gate.starting == 0  # free start slots, but "fn" is at its cap
    # another function still gets a slot while "fn" waits
    assert other.invoke("other", lambda env: None) == "env-1"
    hold.set()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert fn.started == 2 and sorted(set(used)) == ["env-1", "env-2"] and len(used) == 6
