"""A deduplicating work queue: a key is processed by one worker at a time, and bursts of events collapse.

Same semantics as client-go's workqueue: adding a key that is waiting is a no-op; adding a key that is
being processed marks it dirty and it runs once more afterwards. Failed keys come back with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from .gate import Gate, OpenGate

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 60.0, gate: Gate | None = None) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._waiting: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.gate: Gate = gate if gate is not None else OpenGate()

    def add(self, key: Hashable) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._waiting:
            return
        self._waiting.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add later; an earlier pending timer for the key wins."""
        if key in self._timers:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay, fire)

    def retry(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay: float = min(self.base_delay * 2.0 ** (failures - 1), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def _get(self) -> Hashable:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def _done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._processing)

    async def run_worker(self, process: Callable[[Hashable], Awaitable[None]]) -> None:
        """Process keys forever, as the gate allows; an exception retries the key with exponential backoff."""
        await self.gate.opened()
        while True:
            key = await self._get()
            try:
                await self.gate.admit()
                await process(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.retry(key)
                log.warning("reconcile of %s failed, retrying in %.1fs: %s", key, delay, exc)
            else:
                self._failures.pop(key, None)
            finally:
                self._done(key)
