"""Are the Secrets a spec references there? Checked before anything that would use them is created."""

from __future__ import annotations

from ..api.spec import SecretKeyRef
from ..kube import Kube


async def missing_secrets(kube: Kube, namespace: str, refs: list[tuple[str, SecretKeyRef]]) -> list[str]:
    """One message per reference (field path, ref) whose Secret or key does not exist."""
    missing = []
    for field, ref in refs:
        secret = await kube.get("Secret", namespace, ref.name)
        if secret is None:
            missing.append(f"{field}: Secret {ref.name!r} not found in namespace {namespace!r}")
        elif ref.key not in (secret.get("data") or {}) and ref.key not in (secret.get("stringData") or {}):
            missing.append(f"{field}: Secret {ref.name!r} has no key {ref.key!r}")
    return missing
