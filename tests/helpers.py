"""Small helpers shared by the tests (no cluster needed to import them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions of the types in ``ignore`` count as "not yet" (e.g. a 404 before an object exists). On
    timeout raise AssertionError naming ``message`` and the last value or exception seen, so a failing
    test says what it was waiting for instead of sleeping and hoping.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}; last: {last!r}")
        time.sleep(interval)
