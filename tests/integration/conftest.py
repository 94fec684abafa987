"""Integration fixtures: the operator as a real process, one per test module (modules stay independent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers import Cluster
from tests.operator_process import OperatorProcess, start_operator, stop_operator


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    """The operator, cluster-wide, webhook registered, resync every 5 s (one module at a time runs one)."""
    op = start_operator(cluster)
    try:
        yield op
    finally:
        stop_operator(cluster, op)
