"""TeleChatDeployment as the operator runs it: serving vLLM behind a Deployment and a Service."""

from __future__ import annotations

from typing import Any

from ..api import constants as c
from ..api.spec import TeleChatDeploymentSpec
from ..controller.kind import CONFIGMAPS, DEPLOYMENTS, PVCS, SERVICES, Kind
from ..render.objects import Owner
from ..validation import Checked
from .reconciler import DeploymentReconciler, check_deployment
from .render import COMPONENT, render_deployment_set


def render(checked: Checked[TeleChatDeploymentSpec], owner: Owner) -> list[dict[str, Any]]:
    return render_deployment_set(checked.spec, checked.effective, owner).objects


KIND = Kind(
    kind=c.KIND,
    plural=c.PLURAL,
    prefix="tcd",
    children={"configmaps": CONFIGMAPS, "services": SERVICES, "deployments": DEPLOYMENTS, "pvcs": PVCS},
    pod_component=COMPONENT,
    reconciler=DeploymentReconciler,
    check=check_deployment,
    render=render,
    admission_id="validate",
    node_gpus=True,
)
