"""Reconcile one TeleChatBatchJob: validate, check input and output, create the Job once, report on it.

Level-based like the TeleChatDeployment reconciler, with one difference that comes from what a batch is:
the Job is created at most once. Its template cannot change, and a finished Job deleted by its TTL must
not run the batch again, so once ``status.jobUid`` is set the operator only observes. Reads during a run
come from the watch-fed indices; the pre-flight GETs (input ConfigMap, PVCs, Secrets) happen only while
no Job exists. Nothing is written when nothing changed.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..api import constants as c
from ..api.status import SPEC_VALID
from ..config import OperatorConfig
from ..controller.cache import ObservedState
from ..controller.conditions import merge_conditions, transitions
from ..controller.events import object_event
from ..controller.plan import plan
from ..controller.reconciler import Outcome, now_rfc3339
from ..kube import ApiError, Kube
from ..render.deployment_set import Owner
from ..resolve import Effective, effective
from ..validation import SpecError
from .observe import BatchObservation, Derived, derive, is_terminal
from .preflight import preflight
from .render import COMPONENT, RenderedBatch, batch_names, output_location, render_batch
from .spec import TeleChatBatchJobSpec
from .status import COMPLETE, FAILED
from .validation import check_batch

log = logging.getLogger(__name__)

# Inputs, volumes and Secrets often appear shortly after the resource; look again this soon.
PREFLIGHT_RETRY_SECONDS = 15.0
# Status fields that describe the spec; kept from the previous status while the spec is invalid.
_SPEC_FIELDS = ("modelId", "servedModelName", "gpusPerPod", "gpus", "output")


class BatchReconciler:
    def __init__(self, kube: Kube, config: OperatorConfig, state: ObservedState) -> None:
        self.kube = kube
        self.config = config
        self.state = state
        self._instance = socket.gethostname()

    async def reconcile(self, ns: str, name: str) -> Outcome:
        body = self.state.owner(ns, name)
        if body is None:
            self.forget(ns, name)
            return Outcome()
        previous: dict[str, Any] = dict(body.get("status") or {})
        job_name = batch_names(name)["job"]
        job = self.state.children(ns, name).get(("Job", job_name))
        if job is None and is_terminal(previous):
            # Finished and the Job is gone (its TTL): the status already holds the outcome.
            return Outcome()

        errors: list[str] = []
        reason = "InvalidSpec"
        notes: list[str] = []
        spec: TeleChatBatchJobSpec | None = None
        eff: Effective | None = None
        try:
            spec, verdict = check_batch(body.get("spec"), self.config)
            eff = effective(spec, self.config)
            notes = eff.notes + verdict.warnings
        except SpecError as exc:
            errors = exc.errors
        rendered = None
        if spec is not None and eff is not None:
            rendered = render_batch(
                spec, eff, Owner(c.API_VERSION, c.BATCH_KIND, name, ns, body["metadata"]["uid"])
            )

        outcome = Outcome()
        total = (previous.get("requests") or {}).get("total")
        apply_error = None
        if (
            job is None
            and not previous.get("jobUid")
            and spec is not None
            and rendered is not None
            and not errors
        ):
            checked = await preflight(self.kube, ns, spec)
            if checked.errors:
                errors, reason = checked.errors, checked.reason
                outcome.requeue_after = PREFLIGHT_RETRY_SECONDS
            else:
                notes += checked.warnings
                total = checked.total
                job, apply_error = await self._create(ns, name, rendered, outcome)
                if job is not None:
                    await self._job_created(body, job, spec, eff)
        elif job is not None and not errors:
            # Pre-flight notes (malformed lines, duplicate ids) were found when the Job was created: keep.
            before: dict[str, Any] = next(
                (x for x in previous.get("conditions") or [] if x.get("type") == SPEC_VALID), {}
            )
            if before.get("status") == "True" and before.get("message"):
                notes = [before["message"]]

        spec_hash = ((job or {}).get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH)
        obs = BatchObservation(
            generation=body["metadata"].get("generation"),
            previous=previous,
            job=job,
            pods=self.state.pods(ns, name, COMPONENT),
            output=output_location(spec) if spec is not None else previous.get("output"),
            total=total,
            spec_errors=errors,
            spec_error_reason=reason,
            notes=notes,
            apply_error=apply_error,
            spec_changed=job is not None and rendered is not None and spec_hash != rendered.spec_hash,
        )
        await self._write_status(body, obs, derive(obs), spec, eff, job, outcome)
        return outcome

    async def _create(
        self, ns: str, name: str, rendered: RenderedBatch, outcome: Outcome
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Apply the ConfigMap (and cache PVC) first, then the Job that mounts them."""
        todo = plan(rendered.objects, self.state.children(ns, name))
        job = None
        for obj in todo.apply:
            try:
                result = await self.kube.apply(obj)
            except ApiError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                # Refused by the API server (quota, admission): report it and retry at the next resync.
                outcome.requeue_after = self.config.resync_seconds
                return None, f"{obj['kind']} {obj['metadata']['name']}: {exc.message}"
            self.state.wrote(ns, name, result)
            outcome.applied += 1
            if obj["kind"] == "Job":
                job = result
        return job, None

    async def _job_created(
        self, body: dict[str, Any], job: dict[str, Any], spec: TeleChatBatchJobSpec, eff: Effective | None
    ) -> None:
        gpus = eff.gpus_per_replica if eff is not None else 0
        message = (
            f"created Job {job['metadata']['name']}: {spec.parallelism} pod(s) with {gpus} "
            f"{spec.resources.gpu_resource_name} each"
        )
        await self.kube.post_event(
            object_event(body, c.BATCH_KIND, "Normal", "JobCreated", message, self._instance, now_rfc3339())
        )

    def _status(
        self,
        body: dict[str, Any],
        obs: BatchObservation,
        derived: Derived,
        spec: TeleChatBatchJobSpec | None,
        eff: Effective | None,
        job: dict[str, Any] | None,
    ) -> dict[str, Any]:
        previous = obs.previous
        status: dict[str, Any] = {
            "observedGeneration": obs.generation,
            "phase": derived.phase,
            "conditions": merge_conditions(
                previous.get("conditions") or [], derived.conditions, now_rfc3339(), obs.generation
            ),
            "requests": derived.requests or None,
            "progress": derived.progress,
            "pods": derived.pods or None,
            "jobName": (job or {}).get("metadata", {}).get("name") or previous.get("jobName"),
            "jobUid": (job or {}).get("metadata", {}).get("uid") or previous.get("jobUid"),
            "startTime": derived.start_time or previous.get("startTime"),
            "completionTime": derived.completion_time,
            "message": derived.message,
        }
        if spec is not None and eff is not None:
            status.update(
                {
                    "modelId": eff.model.model_id,
                    "servedModelName": eff.served_model_name,
                    "gpusPerPod": eff.gpus_per_replica,
                    "gpus": eff.gpus_per_replica * spec.parallelism,
                    "output": output_location(spec),
                }
            )
        else:
            status.update({k: previous.get(k) for k in _SPEC_FIELDS})
        if not derived.requests and previous.get("requests") and job is not None:
            # The pods that reported the counts are gone (deleted by hand): keep what was learned.
            status["requests"], status["progress"] = previous.get("requests"), previous.get("progress")
        return {k: v for k, v in status.items() if v is not None}

    async def _write_status(
        self,
        body: dict[str, Any],
        obs: BatchObservation,
        derived: Derived,
        spec: TeleChatBatchJobSpec | None,
        eff: Effective | None,
        job: dict[str, Any] | None,
        outcome: Outcome,
    ) -> None:
        previous = obs.previous
        status = self._status(body, obs, derived, spec, eff, job)
        if status == previous:
            return
        meta = body["metadata"]
        patch: dict[str, Any] = dict(status)
        for stale in set(previous) - set(status):
            patch[stale] = None
        result = await self.kube.patch_status(c.BATCH_KIND, meta["namespace"], meta["name"], patch)
        self.state.wrote_owner(meta["namespace"], meta["name"], result)
        outcome.status_written = True
        before = {x.get("type"): x.get("status") for x in previous.get("conditions") or []}
        for cond in transitions(previous.get("conditions") or [], status["conditions"]):
            event_type = _event_type(cond, before.get(cond["type"]))
            if event_type is None:
                continue
            message = (
                f"{cond['type']}={cond['status']}: {cond['message']}" if cond["message"] else cond["type"]
            )
            await self.kube.post_event(
                object_event(
                    body, c.BATCH_KIND, event_type, cond["reason"], message, self._instance, now_rfc3339()
                )
            )

    def forget(self, ns: str, name: str) -> None:
        self.state.forget(ns, name)


def _event_type(cond: dict[str, Any], before: str | None) -> str | None:
    """Transitions worth an Event: a refused spec or input, recovery from it, and how the batch ended."""
    kind, status = cond["type"], cond["status"]
    if (kind, status) in ((SPEC_VALID, "False"), (FAILED, "True")):
        return "Warning"
    if (kind, status) == (COMPLETE, "True"):
        return "Normal"
    if (kind, status) == (SPEC_VALID, "True") and before == "False":
        return "Normal"
    return None
