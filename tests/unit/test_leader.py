"""Leader election against an in-memory Lease store with the API server's optimistic concurrency."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from telechat_operator.controller.gate import LeaderGate
from telechat_operator.controller.leader import LeaderElector, LeaseOptions
from telechat_operator.controller.workqueue import WorkQueue
from telechat_operator.kube import ApiError

NS, NAME = "ops", "telechat-operator"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"


class FakeLeases:
    """GET/POST/PUT of one Lease; PUT with a stale resourceVersion is a 409, like the API server."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        if self.fail:
            raise ApiError(503, "Service Unavailable", None)
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "Not Found", None)
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise ApiError(409, "AlreadyExists", None)
            return self._store(body)
        if method == "PUT":
            assert path == PATH
            if (
                self.lease is None
                or body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]
            ):
                raise ApiError(409, "Conflict", None)
            return self._store(body)
        raise AssertionError(method)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(store: FakeLeases, identity: str, clock: Clock, lost: list[str] | None = None) -> LeaderElector:
    options = LeaseOptions(name=NAME, namespace=NS, identity=identity, lease_seconds=15, renew_deadline=10)
    return LeaderElector(
        store,  # type: ignore[arg-type]
        options,
        on_lost=lambda: (lost if lost is not None else []).append(identity),
        clock=clock,
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_options_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseOptions(name=NAME, namespace=NS, identity="a", lease_seconds=10, renew_deadline=10)


def test_first_candidate_creates_the_lease_and_a_second_waits() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert run(a.try_acquire_or_renew()) is True
    assert store.holder == "a"
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 0
    assert run(b.try_acquire_or_renew()) is False
    clock.now += 14  # not yet expired by b's own observation
    assert run(b.try_acquire_or_renew()) is False
    assert store.holder == "a"


def test_a_renewing_leader_keeps_the_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    run(a.try_acquire_or_renew())
    for _ in range(10):
        clock.now += 10
        assert run(a.try_acquire_or_renew()) is True
        assert run(b.try_acquire_or_renew()) is False  # b sees the record change each time
    assert store.holder == "a"
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 0


def test_an_expired_lease_is_taken_over_by_local_observation() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    run(a.try_acquire_or_renew())
    assert run(b.try_acquire_or_renew()) is False  # b starts observing now
    clock.now += 15.5
    assert run(b.try_acquire_or_renew()) is True
    assert store.holder == "b"
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 1


def test_concurrent_update_loses_on_conflict() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    run(a.try_acquire_or_renew())
    run(b.try_acquire_or_renew())
    clock.now += 20
    stale = copy.deepcopy(store.lease)
    assert run(a.try_acquire_or_renew()) is True  # a renews first
    original = store.request

    async def read_stale(method: str, path: str, **kw: Any) -> dict[str, Any]:
        if method == "GET":
            return copy.deepcopy(stale)  # type: ignore[arg-type]
        return await original(method, path, **kw)

    store.request = read_stale  # type: ignore[method-assign]
    assert run(b.try_acquire_or_renew()) is False, "b's update is based on an old resourceVersion"
    assert store.holder == "a"


def test_renew_calls_on_lost_when_another_holder_appears() -> None:
    store, clock = FakeLeases(), Clock()
    lost: list[str] = []
    a = elector(store, "a", clock, lost)
    a.options = LeaseOptions(NAME, NS, "a", lease_seconds=3, renew_deadline=2, retry_period=0.01)

    async def scenario() -> None:
        await a.acquire()
        assert a.fresh()
        assert store.lease is not None
        store.lease["spec"]["holderIdentity"] = "intruder"  # someone else took it
        await asyncio.wait_for(a.renew(), timeout=5)

    run(scenario())
    assert lost == ["a"]
    assert not a.leading.is_set()


def test_renew_gives_up_after_the_deadline_when_the_api_fails() -> None:
    store, clock = FakeLeases(), Clock()
    lost: list[str] = []
    a = elector(store, "a", clock, lost)
    a.options = LeaseOptions(NAME, NS, "a", lease_seconds=3, renew_deadline=2, retry_period=0.01)

    async def scenario() -> None:
        await a.acquire()
        store.fail = True

        async def advance() -> None:
            while not lost:
                clock.now += 0.5
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(advance())
        await asyncio.wait_for(a.renew(), timeout=5)
        ticker.cancel()

    run(scenario())
    assert lost == ["a"]


def test_fresh_only_within_the_renew_deadline() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    assert not a.fresh()
    run(a.acquire())
    assert a.fresh()
    clock.now += 10.5  # e.g. the process was frozen
    assert not a.fresh()


def test_release_clears_the_holder() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    run(a.acquire())
    run(b.try_acquire_or_renew())
    run(a.release())
    assert store.holder == ""
    assert run(b.try_acquire_or_renew()) is True, "a released lease is free at once"


def test_gated_work_queues_wait_for_leadership() -> None:
    processed: list[str] = []
    allowed = {"now": False}

    async def scenario() -> None:
        opened = asyncio.Event()
        queue = WorkQueue(gate=LeaderGate(lambda: allowed["now"], opened))

        async def process(key: Any) -> None:
            processed.append(key)

        worker = asyncio.create_task(queue.run_worker(process))
        queue.add("a")
        await asyncio.sleep(0.05)
        assert processed == [], "not leading: nothing is processed"
        opened.set()
        await asyncio.sleep(0.15)
        assert processed == [], "leading but the lease is not fresh"
        allowed["now"] = True
        await asyncio.sleep(0.25)
        assert processed == ["a"]
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    run(scenario())
