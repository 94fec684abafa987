"""Reconcile one TeleChatDeployment: check, render, apply the children, observe, write status.

Level-based: it compares what should exist with what does, whatever event woke it up, and makes no API
call when they agree. Invalid specs never touch the children (the last good configuration keeps serving)
and never raise: they become a SpecValid=False condition and an Event.
"""

from __future__ import annotations

from typing import Any

from ..api import constants as c
from ..api.spec import SecretKeyRef, TeleChatDeploymentSpec
from ..config import OperatorConfig
from ..controller.apply import ChildWriter
from ..controller.cache import ObservedState
from ..controller.secrets import missing_secrets
from ..controller.status import Outcome, StatusWriter
from ..kube import Kube
from ..render.objects import Owner
from ..validation import Checked, SpecError, check
from .observe import Observation, derive
from .render import COMPONENT, render_deployment_set
from .status import desired_status, event_type

# Kinds the operator may delete when it stops rendering them (a cache PVC removed from the spec).
_PRUNABLE = frozenset({"PersistentVolumeClaim"})
# Secrets often arrive after the resource (GitOps ordering): look again this soon.
SECRET_RETRY_SECONDS = 15.0


def check_deployment(
    raw_spec: dict[str, Any] | None, config: OperatorConfig | None = None
) -> Checked[TeleChatDeploymentSpec]:
    return check(TeleChatDeploymentSpec, raw_spec, config)


def _secret_refs(spec: TeleChatDeploymentSpec) -> list[tuple[str, SecretKeyRef]]:
    refs: list[tuple[str, SecretKeyRef]] = []
    if spec.model.hf_token_secret_ref is not None:
        refs.append(("spec.model.hfTokenSecretRef", spec.model.hf_token_secret_ref))
    if spec.api_key_secret_ref is not None:
        refs.append(("spec.apiKeySecretRef", spec.api_key_secret_ref))
    return refs


class DeploymentReconciler:
    def __init__(self, kube: Kube, config: OperatorConfig, state: ObservedState) -> None:
        self.kube = kube
        self.config = config
        self.state = state
        self.status = StatusWriter(kube, state, c.KIND, event_type)
        self.children = ChildWriter(kube, state, config.resync_seconds, prunable=_PRUNABLE)
        # (namespace, name) -> generation whose Secrets were found; rechecked when the spec changes.
        self._secrets_ok: dict[tuple[str, str], int | None] = {}

    async def _missing_secrets(
        self, ns: str, name: str, generation: int | None, spec: TeleChatDeploymentSpec
    ) -> list[str]:
        refs = _secret_refs(spec)
        if not refs or self._secrets_ok.get((ns, name), -1) == generation:
            return []
        missing = await missing_secrets(self.kube, ns, refs)
        if not missing:
            self._secrets_ok[(ns, name)] = generation
        return missing

    async def reconcile(self, ns: str, name: str) -> Outcome:
        body = self.state.owner(ns, name)
        if body is None:
            self.forget(ns, name)
            return Outcome()
        meta = body["metadata"]
        generation = meta.get("generation")
        errors: list[str] = []
        reason = "InvalidSpec"
        checked: Checked[TeleChatDeploymentSpec] | None = None
        try:
            checked = check_deployment(body.get("spec"), self.config)
        except SpecError as exc:
            errors = exc.errors
        outcome = Outcome()
        if checked is not None:
            missing = await self._missing_secrets(ns, name, generation, checked.spec)
            if missing:
                errors, reason = missing, "SecretNotFound"
                outcome.requeue_after = SECRET_RETRY_SECONDS

        apply_error = None
        if checked is not None and not errors:
            owner = Owner(c.API_VERSION, c.KIND, name, ns, meta["uid"])
            rendered = render_deployment_set(checked.spec, checked.effective, owner)
            applied = await self.children.sync(ns, name, rendered.objects, outcome)
            apply_error = applied.error
        deployment = self.state.children(ns, name).get(("Deployment", name))
        obs = self._observation(body, checked, deployment, errors, reason, apply_error)
        status = desired_status(body, derive(obs), generation, obs.desired_replicas, checked)
        await self.status.write(body, status, outcome)
        return outcome

    def _observation(
        self,
        body: dict[str, Any],
        checked: Checked[TeleChatDeploymentSpec] | None,
        deployment: dict[str, Any] | None,
        errors: list[str],
        reason: str,
        apply_error: str | None,
    ) -> Observation:
        name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
        if checked is not None:
            desired: Any = checked.spec.replicas
        else:
            desired = (body.get("spec") or {}).get("replicas", 1)
        obs = Observation(
            generation=body["metadata"].get("generation"),
            desired_replicas=desired if isinstance(desired, int) else 1,
            deployment=deployment,
            pods=self.state.pods(ns, name, COMPONENT),
            spec_errors=errors,
            spec_error_reason=reason,
            notes=checked.notes if checked is not None else [],
            apply_error=apply_error,
            gpu_resource=checked.spec.resources.gpu_resource_name if checked else "nvidia.com/gpu",
            gpus_per_replica=checked.effective.gpus_per_replica if checked else 0,
        )
        if checked is not None and self.config.watch_nodes:
            obs.largest_node_gpus = self.state.largest_node_gpus(checked.spec.resources.gpu_resource_name)
        return obs

    def forget(self, ns: str, name: str) -> None:
        self._secrets_ok.pop((ns, name), None)
        self.state.forget(ns, name)
