"""Every kind this operator serves, in one tuple: the process root and `telechat-operator render` read it."""

from __future__ import annotations

from .batch.kind import KIND as BATCH
from .controller.kind import Kind
from .deployment.kind import KIND as DEPLOYMENT

KINDS: tuple[Kind, ...] = (DEPLOYMENT, BATCH)
