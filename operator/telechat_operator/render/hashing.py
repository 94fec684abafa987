"""Stable content hashes (the pod-template annotation that rolls pods when the engine config changes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(value: Any) -> str:
    """sha256 of a canonical JSON form, shortened to 16 hex digits."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
