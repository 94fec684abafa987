"""Checks against the cluster before a batch Job exists: everything that can be found out before GPUs are
requested. Inputs, volumes and Secrets that are missing now often arrive a little later (GitOps ordering),
so the reconciler looks again; nothing is created until every check passes.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..controller.secrets import missing_secrets
from ..kube import Kube
from .runner import Scan, scan
from .spec import TeleChatBatchJobSpec

# Reasons of SpecValid=False, one per kind of problem, in the order they are reported.
SECRET_NOT_FOUND = "SecretNotFound"
VOLUME_NOT_FOUND = "VolumeNotFound"
INPUT_NOT_FOUND = "InputNotFound"
INPUT_NOT_JSONL = "InputNotJSONL"
OUTPUT_NOT_FOUND = "OutputNotFound"
OUTPUT_NOT_WRITABLE = "OutputNotWritable"


@dataclass
class Preflight:
    errors: list[str] = field(default_factory=list)
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    # Requests in the input, when the operator could read it (ConfigMap input).
    total: int | None = None

    def fail(self, reason: str, message: str) -> None:
        if not self.errors:
            self.reason = reason
        self.errors.append(message)


def configmap_text(configmap: dict[str, Any], key: str) -> str | None:
    """The key's text from data or binaryData; None when the key is absent. Raises ValueError if not UTF-8."""
    data = configmap.get("data") or {}
    if key in data:
        return str(data[key])
    binary = configmap.get("binaryData") or {}
    if key in binary:
        try:
            return base64.b64decode(binary[key]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"binaryData key {key!r} is not UTF-8 text: {exc}") from None
    return None


def input_warnings(found: Scan) -> list[str]:
    """Bad lines and duplicate ids do not stop a batch (each gets its own error line); say so up front."""
    warnings = []
    bad = [line for line in found.lines if line.error]
    if bad:
        warnings.append(
            f"spec.input: {len(bad)} of {found.total} requests are malformed and will get error lines in the "
            f"output instead of answers (first: {bad[0].error})"
        )
    ids = Counter(line.custom_id for line in found.lines if line.custom_id is not None)
    dupes = sorted(k for k, n in ids.items() if n > 1)
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5])
        warnings.append(
            f"spec.input: custom_id values used more than once: {shown}; match results by position"
        )
    return warnings


async def _check_claim(kube: Kube, ns: str, claim: str, where: str, result: Preflight, reason: str) -> None:
    if await kube.get("PersistentVolumeClaim", ns, claim) is None:
        result.fail(reason, f"{where}: PersistentVolumeClaim {claim!r} not found in namespace {ns!r}")


async def _check_input(kube: Kube, ns: str, spec: TeleChatBatchJobSpec, result: Preflight) -> None:
    source = spec.input
    if source.pvc is not None:
        # The file itself is checked by the pod (exit code 3 fails the Job at once with the reason).
        await _check_claim(kube, ns, source.pvc.claim_name, "spec.input.pvc", result, INPUT_NOT_FOUND)
        return
    assert source.config_map is not None
    ref = source.config_map
    configmap = await kube.get("ConfigMap", ns, ref.name)
    if configmap is None:
        result.fail(
            INPUT_NOT_FOUND, f"spec.input.configMap: ConfigMap {ref.name!r} not found in namespace {ns!r}"
        )
        return
    try:
        text = configmap_text(configmap, ref.key)
    except ValueError as exc:
        result.fail(INPUT_NOT_JSONL, f"spec.input.configMap: ConfigMap {ref.name!r}: {exc}")
        return
    if text is None:
        keys = sorted([*(configmap.get("data") or {}), *(configmap.get("binaryData") or {})])
        result.fail(
            INPUT_NOT_FOUND,
            f"spec.input.configMap: ConfigMap {ref.name!r} has no key {ref.key!r} "
            f"(keys: {', '.join(keys) or 'none'})",
        )
        return
    found = scan(text)
    reason = found.not_jsonl_reason()
    if reason is not None:
        result.fail(INPUT_NOT_JSONL, f"spec.input.configMap: {ref.name}/{ref.key}: {reason}")
        return
    result.total = found.total
    result.warnings.extend(input_warnings(found))


async def _check_output(kube: Kube, ns: str, spec: TeleChatBatchJobSpec, result: Preflight) -> None:
    claim_name = spec.output.pvc.claim_name
    claim = await kube.get("PersistentVolumeClaim", ns, claim_name)
    if claim is None:
        result.fail(
            OUTPUT_NOT_FOUND,
            f"spec.output.pvc: PersistentVolumeClaim {claim_name!r} not found in namespace {ns!r}",
        )
        return
    modes = set((claim.get("spec") or {}).get("accessModes") or [])
    phase = (claim.get("status") or {}).get("phase")
    if phase == "Lost":
        result.fail(
            OUTPUT_NOT_WRITABLE, f"spec.output.pvc: PersistentVolumeClaim {claim_name!r} lost its volume"
        )
    elif modes and modes <= {"ReadOnlyMany"}:
        result.fail(
            OUTPUT_NOT_WRITABLE,
            f"spec.output.pvc: PersistentVolumeClaim {claim_name!r} is ReadOnlyMany: results cannot be "
            "written",
        )
    elif spec.parallelism > 1 and modes == {"ReadWriteOncePod"}:
        result.fail(
            OUTPUT_NOT_WRITABLE,
            f"spec.output.pvc: PersistentVolumeClaim {claim_name!r} is ReadWriteOncePod, but parallelism "
            f"{spec.parallelism} runs that many pods writing to it; use ReadWriteMany or parallelism 1",
        )
    elif spec.parallelism > 1 and modes and "ReadWriteMany" not in modes:
        result.warnings.append(
            f"spec.output.pvc: PersistentVolumeClaim {claim_name!r} is not ReadWriteMany: the "
            f"{spec.parallelism} pods can only run on the node that mounts it"
        )


async def preflight(kube: Kube, ns: str, spec: TeleChatBatchJobSpec) -> Preflight:
    result = Preflight()
    refs = []
    if spec.model.hf_token_secret_ref is not None:
        refs.append(("spec.model.hfTokenSecretRef", spec.model.hf_token_secret_ref))
    for message in await missing_secrets(kube, ns, refs):
        result.fail(SECRET_NOT_FOUND, message)
    if spec.model.pvc is not None:
        await _check_claim(kube, ns, spec.model.pvc.claim_name, "spec.model.pvc", result, VOLUME_NOT_FOUND)
    cache = spec.model.cache
    if cache is not None and cache.existing_claim:
        await _check_claim(
            kube, ns, cache.existing_claim, "spec.model.cache.existingClaim", result, VOLUME_NOT_FOUND
        )
    await _check_input(kube, ns, spec, result)
    await _check_output(kube, ns, spec, result)
    return result
