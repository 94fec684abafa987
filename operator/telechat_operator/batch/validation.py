"""Validation of a TeleChatBatchJob: TeleChatDeployment's model-aware checks plus the batch-only rules.

Pure, like ``telechat_operator.validation``; the checks that need the cluster (input, output, Secrets)
are in ``preflight``.
"""

from __future__ import annotations

from typing import Any

from ..config import OperatorConfig
from ..validation import SpecError, Verdict, flag_name, parse_as, validate
from .spec import TeleChatBatchJobSpec

# run_batch flags the batch renders itself (input, output and their scratch folder).
BATCH_OWNED_FLAGS = frozenset({"i", "o", "input-file", "output-file", "output-tmp-dir"})


def validate_batch(spec: TeleChatBatchJobSpec, config: OperatorConfig | None = None) -> Verdict:
    verdict = validate(spec, config)
    for arg in spec.engine.extra_args:
        if flag_name(arg) in BATCH_OWNED_FLAGS:
            verdict.errors.append(
                f"spec.engine.extraArgs: {arg.split('=')[0]} is rendered by the operator from "
                "spec.input and spec.output"
            )
    return verdict


def check_batch(
    raw_spec: dict[str, Any] | None, config: OperatorConfig | None = None
) -> tuple[TeleChatBatchJobSpec, Verdict]:
    """Parse and validate; raises SpecError for a spec that does not parse or fails a rule."""
    spec = parse_as(TeleChatBatchJobSpec, raw_spec)
    verdict = validate_batch(spec, config)
    if not verdict.ok:
        raise SpecError(verdict.errors)
    return spec, verdict
