"""Pure planning: which rendered objects must be applied, given what the cluster has.

The cluster adds defaults, status and metadata to every object, so "unchanged" means every field the
operator renders is present with the same value (the desired object is a subset of the observed one).
A child edited or deleted by hand fails that test and is applied again: level-based drift repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ObjectKey = tuple[str, str]  # (kind, name) within one namespace


def key_of(obj: dict[str, Any]) -> ObjectKey:
    return obj["kind"], obj["metadata"]["name"]


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have:
        return True
    # The API server may return 1.0 for 1 or "8" for 8 in int-or-string fields.
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    return False


def is_subset(want: Any, have: Any) -> bool:
    """True when every field of ``want`` is in ``have`` with an equal value; lists match item by item."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and is_subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(is_subset(w, h) for w, h in zip(want, have, strict=True))
    return _scalar_equal(want, have)


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ObjectKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.apply and not self.delete


def plan(desired: list[dict[str, Any]], observed: dict[ObjectKey, dict[str, Any]]) -> Plan:
    """Apply what is missing or differs; delete owned objects no longer rendered (a dropped cache PVC)."""
    result = Plan()
    wanted = set()
    for obj in desired:
        key = key_of(obj)
        wanted.add(key)
        have = observed.get(key)
        if have is None or not is_subset(obj, have):
            result.apply.append(obj)
    result.delete = sorted(k for k in observed if k not in wanted)
    return result
