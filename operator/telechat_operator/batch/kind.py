"""TeleChatBatchJob as the operator runs it: vLLM's batch mode in an Indexed Job, created once."""

from __future__ import annotations

from typing import Any

from ..api import constants as c
from ..controller.kind import CONFIGMAPS, JOBS, PVCS, Kind
from ..render.objects import Owner
from ..validation import Checked
from .reconciler import BatchReconciler
from .render import COMPONENT, render_batch
from .spec import TeleChatBatchJobSpec
from .validation import check_batch


def render(checked: Checked[TeleChatBatchJobSpec], owner: Owner) -> list[dict[str, Any]]:
    """No cluster here: the input and output are checked by the reconciler's pre-flight, not by `render`."""
    return render_batch(checked.spec, checked.effective, owner).objects


KIND = Kind(
    kind=c.BATCH_KIND,
    plural=c.BATCH_PLURAL,
    prefix="tcb",
    children={"configmaps": CONFIGMAPS, "pvcs": PVCS, "jobs": JOBS},
    pod_component=COMPONENT,
    reconciler=BatchReconciler,
    check=check_batch,
    render=render,
    admission_id="validate-batch",
)
