"""Validation of a TeleChatBatchJob: the serving rules (``telechat_operator.validation``) plus batch's own.

The checks that need the cluster (input, output, Secrets) are in ``preflight``.
"""

from __future__ import annotations

from typing import Any

from ..config import OperatorConfig
from ..resolve import Effective
from ..validation import Checked, Verdict, check, flag_name
from .spec import TeleChatBatchJobSpec

# run_batch flags the batch renders itself (input, output and their scratch folder).
BATCH_OWNED_FLAGS = frozenset({"i", "o", "input-file", "output-file", "output-tmp-dir"})


def _batch_owned_flags(spec: TeleChatBatchJobSpec, _: Effective, verdict: Verdict) -> None:
    for arg in spec.engine.extra_args:
        if flag_name(arg) in BATCH_OWNED_FLAGS:
            verdict.errors.append(
                f"spec.engine.extraArgs: {arg.split('=')[0]} is rendered by the operator from "
                "spec.input and spec.output"
            )


def check_batch(
    raw_spec: dict[str, Any] | None, config: OperatorConfig | None = None
) -> Checked[TeleChatBatchJobSpec]:
    """Parse, resolve and validate; raises SpecError for a spec that does not parse or fails a rule."""
    return check(TeleChatBatchJobSpec, raw_spec, config, rules=(_batch_owned_flags,))
