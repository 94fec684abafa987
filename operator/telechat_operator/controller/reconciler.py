"""Reconcile one TeleChatDeployment: validate, render, plan, apply, observe, write status.

Level-based: it compares what should exist with what does, whatever event woke it up, and makes no API
call when they agree. Invalid specs never touch the children (the last good configuration keeps serving)
and never raise: they become a SpecValid=False condition and an Event.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api import constants as c
from ..api.spec import SecretKeyRef, TeleChatDeploymentSpec
from ..config import OperatorConfig
from ..kube import ApiError, Kube
from ..render import Owner, render_deployment_set
from ..render.deployment_set import COMPONENT
from ..render.names import selector_labels
from ..resolve import Effective, effective
from ..validation import SpecError, check
from .cache import ObservedState
from .conditions import merge_conditions, transitions
from .events import object_event
from .observe import Observation, derive
from .plan import plan
from .secrets import missing_secrets

log = logging.getLogger(__name__)

# Ready=False for these reasons follows from what the user asked for.
_EXPECTED_NOT_READY = frozenset({"Creating", "RolloutInProgress", "ModelLoading", "ScaledToZero"})
# Kinds the operator may delete when it stops rendering them (a cache PVC removed from the spec).
_PRUNABLE = {"PersistentVolumeClaim"}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    """What one reconcile did (tests and benchmarks read it)."""

    applied: int = 0
    deleted: int = 0
    status_written: bool = False
    requeue_after: float | None = None


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig, state: ObservedState) -> None:
        self.kube = kube
        self.config = config
        self.state = state
        # (namespace, name) -> generation whose Secrets were found; rechecked when the spec changes.
        self._secrets_ok: dict[tuple[str, str], int | None] = {}
        self._instance = socket.gethostname()

    async def _missing_secrets(
        self, ns: str, name: str, generation: int | None, spec: TeleChatDeploymentSpec
    ) -> list[str]:
        refs: list[tuple[str, SecretKeyRef]] = []
        if spec.model.hf_token_secret_ref is not None:
            refs.append(("spec.model.hfTokenSecretRef", spec.model.hf_token_secret_ref))
        if spec.api_key_secret_ref is not None:
            refs.append(("spec.apiKeySecretRef", spec.api_key_secret_ref))
        if not refs or self._secrets_ok.get((ns, name), -1) == generation:
            return []
        missing = await missing_secrets(self.kube, ns, refs)
        if not missing:
            self._secrets_ok[(ns, name)] = generation
        return missing

    async def _apply_children(
        self, ns: str, name: str, uid: str, spec: TeleChatDeploymentSpec, eff: Effective
    ) -> tuple[Outcome, str | None, dict[str, Any] | None]:
        outcome = Outcome()
        owner = Owner(c.API_VERSION, c.KIND, name, ns, uid)
        rendered = render_deployment_set(spec, eff, owner)
        observed = self.state.children(ns, name)
        todo = plan(rendered.objects, observed)
        error = None
        for obj in todo.apply:
            try:
                result = await self.kube.apply(obj)
            except ApiError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                # Refused by the API server (an immutable field, a quota): report it, do not hot-loop.
                error = f"{obj['kind']} {obj['metadata']['name']}: {exc.message}"
                outcome.requeue_after = self.config.resync_seconds
                continue
            self.state.wrote(ns, name, result)
            outcome.applied += 1
        for kind, child in todo.delete:
            if kind in _PRUNABLE:
                await self.kube.delete(kind, ns, child)
                outcome.deleted += 1
        deployment = self.state.children(ns, name).get(("Deployment", name))
        return outcome, error, deployment

    async def reconcile(self, ns: str, name: str) -> Outcome:
        body = self.state.owner(ns, name)
        if body is None:
            self.forget(ns, name)
            return Outcome()
        meta = body["metadata"]
        generation = meta.get("generation")
        errors: list[str] = []
        reason = "InvalidSpec"
        notes: list[str] = []
        spec: TeleChatDeploymentSpec | None = None
        eff: Effective | None = None
        try:
            spec, verdict = check(body.get("spec"), self.config)
            eff = effective(spec, self.config)
            notes = eff.notes + verdict.warnings
        except SpecError as exc:
            errors = exc.errors
        outcome = Outcome()
        if spec is not None and not errors:
            missing = await self._missing_secrets(ns, name, generation, spec)
            if missing:
                errors, reason = missing, "SecretNotFound"
                # Secrets often arrive after the resource (GitOps ordering): look again soon.
                outcome.requeue_after = 15.0

        apply_error = None
        if spec is not None and eff is not None and not errors:
            outcome, apply_error, deployment = await self._apply_children(ns, name, meta["uid"], spec, eff)
        else:
            deployment = self.state.children(ns, name).get(("Deployment", name))

        desired = spec.replicas if spec is not None else (body.get("spec") or {}).get("replicas", 1)
        obs = Observation(
            generation=generation,
            desired_replicas=desired if isinstance(desired, int) else 1,
            deployment=deployment,
            pods=self.state.pods(ns, name, COMPONENT),
            spec_errors=errors,
            spec_error_reason=reason,
            notes=notes,
            apply_error=apply_error,
            gpu_resource=spec.resources.gpu_resource_name if spec else "nvidia.com/gpu",
            gpus_per_replica=eff.gpus_per_replica if eff else 0,
        )
        if spec is not None and self.config.watch_nodes:
            obs.largest_node_gpus = self.state.largest_node_gpus(spec.resources.gpu_resource_name)
        await self._write_status(body, obs, spec, eff, outcome)
        return outcome

    def _status(
        self,
        body: dict[str, Any],
        obs: Observation,
        spec: TeleChatDeploymentSpec | None,
        eff: Effective | None,
    ) -> dict[str, Any]:
        previous = body.get("status") or {}
        phase, conds, pods, ready = derive(obs)
        status: dict[str, Any] = {
            "observedGeneration": obs.generation,
            "phase": phase,
            "conditions": merge_conditions(
                previous.get("conditions") or [], conds, now_rfc3339(), obs.generation
            ),
            "replicas": pods,
            "readyReplicas": ready,
            "ready": f"{ready}/{obs.desired_replicas}",
        }
        if spec is not None and eff is not None:
            name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
            status.update(
                {
                    # The pods' selector, for the scale subresource (and HPA).
                    "selector": ",".join(
                        f"{k}={v}" for k, v in sorted(selector_labels(name, COMPONENT).items())
                    ),
                    "modelId": eff.model.model_id,
                    "servedModelName": eff.served_model_name,
                    "tensorParallelSize": eff.tensor_parallel_size,
                    "pipelineParallelSize": eff.pipeline_parallel_size,
                    "gpusPerReplica": eff.gpus_per_replica,
                    "gpus": eff.gpus_per_replica * spec.replicas,
                    "endpoint": f"http://{name}.{ns}.svc:{spec.service.port}/v1",
                }
            )
        else:
            for key in (
                "selector",
                "modelId",
                "servedModelName",
                "tensorParallelSize",
                "pipelineParallelSize",
                "gpusPerReplica",
                "gpus",
                "endpoint",
            ):
                if key in previous:
                    status[key] = previous[key]
        return status

    async def _write_status(
        self,
        body: dict[str, Any],
        obs: Observation,
        spec: TeleChatDeploymentSpec | None,
        eff: Effective | None,
        outcome: Outcome,
    ) -> None:
        previous = body.get("status") or {}
        status = self._status(body, obs, spec, eff)
        if all(previous.get(k) == v for k, v in status.items()):
            return
        meta = body["metadata"]
        # Fields we no longer report are removed by setting them to null in the merge patch.
        patch = dict(status)
        for stale in set(previous) - set(status):
            patch[stale] = None
        result = await self.kube.patch_status(c.KIND, meta["namespace"], meta["name"], patch)
        self.state.wrote_owner(meta["namespace"], meta["name"], result)
        outcome.status_written = True
        before = {x.get("type"): (x.get("status"), x.get("reason")) for x in previous.get("conditions") or []}
        for cond in transitions(previous.get("conditions") or [], status["conditions"]):
            event_type = self._event_type(cond, before)
            if event_type is not None:
                await self._event(body, cond, event_type)

    @staticmethod
    def _event_type(cond: dict[str, Any], previous: dict[str, tuple[str, str]]) -> str | None:
        """Which transitions become Events: trouble (Warning) and recovery or readiness (Normal)."""
        kind, status = cond["type"], cond["status"]
        before = previous.get(kind)
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

    async def _event(self, body: dict[str, Any], cond: dict[str, Any], kind: str) -> None:
        text = f"{cond['type']}={cond['status']}"
        message = f"{text}: {cond['message']}" if cond["message"] else text
        event = object_event(body, c.KIND, kind, cond["reason"], message, self._instance, now_rfc3339())
        await self.kube.post_event(event)

    def forget(self, ns: str, name: str) -> None:
        self._secrets_ok.pop((ns, name), None)
        self.state.forget(ns, name)
