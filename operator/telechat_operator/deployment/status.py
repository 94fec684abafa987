"""The TeleChatDeployment status the operator reports, as the typed model, and which transitions are news.

Pure: built from what was derived and the checked spec; the controller's StatusWriter writes it.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import TeleChatDeploymentSpec
from ..api.status import TeleChatDeploymentStatus
from ..controller.status import Derived, carried, conditions_for
from ..render.names import selector_labels
from ..validation import Checked
from .observe import Replicas
from .render import COMPONENT

# Ready=False for these reasons follows from what the user asked for.
_EXPECTED_NOT_READY = frozenset({"Creating", "RolloutInProgress", "ModelLoading", "ScaledToZero"})
# Fields that describe the spec; kept from the previous status while the spec is invalid.
_SPEC_FIELDS = (
    "selector",
    "model_id",
    "served_model_name",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "gpus_per_replica",
    "gpus",
    "endpoint",
)


def _spec_fields(body: dict[str, Any], checked: Checked[TeleChatDeploymentSpec]) -> dict[str, Any]:
    name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
    spec, eff = checked.spec, checked.effective
    return {
        # The pods' selector, for the scale subresource (and HPA).
        "selector": ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name, COMPONENT).items())),
        "model_id": eff.model.model_id,
        "served_model_name": eff.served_model_name,
        "tensor_parallel_size": eff.tensor_parallel_size,
        "pipeline_parallel_size": eff.pipeline_parallel_size,
        "gpus_per_replica": eff.gpus_per_replica,
        "gpus": eff.gpus_per_replica * spec.replicas,
        "endpoint": f"http://{name}.{ns}.svc:{spec.service.port}/v1",
    }


def desired_status(
    body: dict[str, Any],
    derived: Derived[Replicas],
    generation: int | None,
    desired_replicas: int,
    checked: Checked[TeleChatDeploymentSpec] | None,
) -> TeleChatDeploymentStatus:
    previous = body.get("status") or {}
    if checked is not None:
        spec_fields = _spec_fields(body, checked)
    else:
        spec_fields = carried(previous, TeleChatDeploymentStatus, _SPEC_FIELDS)
    figures = derived.figures
    return TeleChatDeploymentStatus(
        observed_generation=generation,
        phase=derived.phase,
        conditions=conditions_for(previous, derived.conditions, generation),
        replicas=figures.pods,
        ready_replicas=figures.ready,
        ready=f"{figures.ready}/{desired_replicas}",
        **spec_fields,
    )


def event_type(cond: dict[str, Any], before: tuple[str, str] | None) -> str | None:
    """Which transitions become Events: trouble (Warning) and recovery or readiness (Normal)."""
    kind, status = cond["type"], cond["status"]
    if (kind, status) in (("SpecValid", "False"), ("Degraded", "True")):
        return "Warning"
    if kind == "Ready" and status == "True":
        return "Normal"
    if kind == "Ready" and status == "False" and before is not None and before[0] == "True":
        # A rollout the user asked for (or a scale to zero) is news, not trouble.
        return "Normal" if cond["reason"] in _EXPECTED_NOT_READY else "Warning"
    if (
        (kind, status) in (("SpecValid", "True"), ("Degraded", "False"))
        and before is not None
        and before[0] != status
    ):
        return "Normal"
    return None
