"""When a work queue may process keys: always, or only while this replica leads (leader election).

The gate is given to each WorkQueue when it is made, so what gates the operator's writes is visible where
the queues are built, and a test or a second operator in the same process is not affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

# How often a gated worker asks again whether it may process the key it holds.
POLL_SECONDS = 0.1


class Gate(Protocol):
    async def opened(self) -> None:
        """Return once workers may start taking keys (keys added before wait in the queue, deduplicated)."""

    async def admit(self) -> None:
        """Return once the key a worker holds may be processed (asked before every key)."""


class OpenGate:
    """No leader election: every key is processed at once."""

    async def opened(self) -> None:
        return None

    async def admit(self) -> None:
        return None


class LeaderGate:
    """Opens when this replica first holds the Lease; admits a key only while the Lease is fresh."""

    def __init__(self, may_process: Callable[[], bool], opened: asyncio.Event | None = None) -> None:
        self.may_process = may_process
        self.leading = opened if opened is not None else asyncio.Event()

    async def opened(self) -> None:
        await self.leading.wait()

    async def admit(self) -> None:
        # A frozen process past its renew deadline must not write before its renewal loop has found out
        # whether it still leads.
        while not self.may_process():
            await asyncio.sleep(POLL_SECONDS)
