"""The work queue collapses bursts and never runs one key twice at the same time."""

from __future__ import annotations

import asyncio

from telechat_operator.controller.workqueue import WorkQueue


def test_dedup_and_serial_per_key() -> None:
    async def scenario() -> tuple[list[str], int]:
        queue = WorkQueue()
        seen: list[str] = []
        running: set[str] = set()
        overlap = 0

        async def process(key: object) -> None:
            nonlocal overlap
            assert isinstance(key, str)
            if key in running:
                overlap += 1
            running.add(key)
            seen.append(key)
            await asyncio.sleep(0.01)
            if seen.count("a") == 1 and key == "a":
                queue.add("a")  # re-added while processing: runs once more afterwards
            running.discard(key)

        for _ in range(5):
            queue.add("a")
        queue.add("b")
        workers = [asyncio.create_task(queue.run_worker(process)) for _ in range(3)]
        await asyncio.sleep(0.1)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        return seen, overlap

    seen, overlap = asyncio.run(scenario())
    assert sorted(seen) == ["a", "a", "b"]
    assert overlap == 0


def test_failures_retry_with_backoff() -> None:
    async def scenario() -> int:
        queue = WorkQueue(base_delay=0.01)
        calls = 0

        async def process(key: object) -> None:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise RuntimeError("API unavailable")

        queue.add("k")
        worker = asyncio.create_task(queue.run_worker(process))
        await asyncio.sleep(0.2)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return calls

    assert asyncio.run(scenario()) == 3
