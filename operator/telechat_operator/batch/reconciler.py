"""Reconcile one TeleChatBatchJob: check, check input and output, create the Job once, report on it.

Level-based like the TeleChatDeployment reconciler, with one difference that comes from what a batch is:
the Job is created at most once. Its template cannot change, and a finished Job deleted by its TTL must
not run the batch again, so once ``status.jobUid`` is set the operator only observes. Reads during a run
come from the watch-fed indices; the pre-flight GETs (input ConfigMap, PVCs, Secrets) happen only while
no Job exists. Nothing is written when nothing changed.
"""

from __future__ import annotations

import logging
from typing import Any

from ..api import constants as c
from ..api.status import SPEC_VALID
from ..config import OperatorConfig
from ..controller.apply import ChildWriter
from ..controller.cache import ObservedState
from ..controller.status import Outcome, StatusWriter
from ..kube import Kube
from ..render.objects import Owner
from ..validation import Checked, SpecError
from .observe import BatchObservation, derive, is_terminal
from .preflight import preflight
from .render import COMPONENT, RenderedBatch, batch_names, output_location, render_batch
from .spec import TeleChatBatchJobSpec
from .status import desired_status, event_type
from .validation import check_batch

log = logging.getLogger(__name__)

# Inputs, volumes and Secrets often appear shortly after the resource; look again this soon.
PREFLIGHT_RETRY_SECONDS = 15.0


def _spec_fields(checked: Checked[TeleChatBatchJobSpec]) -> dict[str, Any]:
    eff = checked.effective
    return {
        "model_id": eff.model.model_id,
        "served_model_name": eff.served_model_name,
        "gpus_per_pod": eff.gpus_per_replica,
        "gpus": eff.gpus_per_replica * checked.spec.parallelism,
        "output": output_location(checked.spec),
    }


def _kept_notes(previous: dict[str, Any]) -> list[str]:
    """Pre-flight notes (malformed lines, duplicate ids) found when the Job was created."""
    before: dict[str, Any] = next(
        (x for x in previous.get("conditions") or [] if x.get("type") == SPEC_VALID), {}
    )
    return [before["message"]] if before.get("status") == "True" and before.get("message") else []


class BatchReconciler:
    def __init__(self, kube: Kube, config: OperatorConfig, state: ObservedState) -> None:
        self.kube = kube
        self.config = config
        self.state = state
        self.status = StatusWriter(kube, state, c.BATCH_KIND, event_type)
        # The Job mounts the ConfigMap (and cache PVC): never create it when they were refused.
        self.children = ChildWriter(kube, state, config.resync_seconds, stop_at_refusal=True)

    async def reconcile(self, ns: str, name: str) -> Outcome:
        body = self.state.owner(ns, name)
        if body is None:
            self.forget(ns, name)
            return Outcome()
        previous: dict[str, Any] = dict(body.get("status") or {})
        job = self.state.children(ns, name).get(("Job", batch_names(name)["job"]))
        if job is None and is_terminal(previous):
            # Finished and the Job is gone (its TTL): the status already holds the outcome.
            return Outcome()

        obs = BatchObservation(
            generation=body["metadata"].get("generation"),
            previous=previous,
            job=job,
            pods=[],
            total=(previous.get("requests") or {}).get("total"),
        )
        checked: Checked[TeleChatBatchJobSpec] | None = None
        try:
            checked = check_batch(body.get("spec"), self.config)
            obs.notes = checked.notes
        except SpecError as exc:
            obs.spec_errors = exc.errors
        rendered = None
        if checked is not None:
            owner = Owner(c.API_VERSION, c.BATCH_KIND, name, ns, body["metadata"]["uid"])
            rendered = render_batch(checked.spec, checked.effective, owner)

        outcome = Outcome()
        if job is None and not previous.get("jobUid") and checked is not None and rendered is not None:
            job = await self._start(body, checked, rendered, obs, outcome)
        elif job is not None and not obs.spec_errors:
            obs.notes = _kept_notes(previous) or obs.notes

        spec_hash = ((job or {}).get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH)
        obs.job = job
        obs.pods = self.state.pods(ns, name, COMPONENT)
        obs.output = output_location(checked.spec) if checked is not None else previous.get("output")
        obs.spec_changed = job is not None and rendered is not None and spec_hash != rendered.spec_hash
        spec_fields = _spec_fields(checked) if checked is not None else None
        status = desired_status(previous, derive(obs), obs.generation, job, spec_fields)
        await self.status.write(body, status, outcome)
        return outcome

    async def _start(
        self,
        body: dict[str, Any],
        checked: Checked[TeleChatBatchJobSpec],
        rendered: RenderedBatch,
        obs: BatchObservation,
        outcome: Outcome,
    ) -> dict[str, Any] | None:
        """Pre-flight, then the ConfigMap (and cache PVC) first and the Job that mounts them."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        checked_io = await preflight(self.kube, ns, checked.spec)
        if checked_io.errors:
            obs.spec_errors, obs.spec_error_reason = checked_io.errors, checked_io.reason
            outcome.requeue_after = PREFLIGHT_RETRY_SECONDS
            return None
        obs.notes = obs.notes + checked_io.warnings
        obs.total = checked_io.total
        applied = await self.children.sync(ns, name, rendered.objects, outcome)
        obs.apply_error = applied.error
        job = next((obj for key, obj in applied.results.items() if key[0] == "Job"), None)
        if job is not None:
            spec = checked.spec
            message = (
                f"created Job {job['metadata']['name']}: {spec.parallelism} pod(s) with "
                f"{checked.effective.gpus_per_replica} {spec.resources.gpu_resource_name} each"
            )
            await self.status.event(body, "Normal", "JobCreated", message)
        return job

    def forget(self, ns: str, name: str) -> None:
        self.state.forget(ns, name)
