"""Names and labels of the objects rendered for one resource."""

from __future__ import annotations

import re

from ..api import constants as c


def child_names(name: str) -> dict[str, str]:
    """Names of a TeleChatDeployment's children; the CRD limits `name` so each fits in 63 characters."""
    return {
        "deployment": name,
        "service": name,
        "configmap": f"{name}-engine",
        "pvc": f"{name}-model-cache",
    }


def _label_value(value: str) -> str:
    """A string made safe for a label value (63 chars of [A-Za-z0-9._-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return cleaned.strip("-._")


def selector_labels(name: str, component: str) -> dict[str, str]:
    """Labels the pod selector matches on; never change them (a Deployment's selector is immutable)."""
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: name,
        c.LABEL_COMPONENT: component,
    }


def common_labels(name: str, component: str, model_id: str) -> dict[str, str]:
    labels = selector_labels(name, component)
    labels[c.LABEL_MANAGED_BY] = c.MANAGED_BY
    labels[c.LABEL_PART_OF] = c.APP_NAME
    labels[f"{c.GROUP}/model"] = _label_value(model_id.rsplit("/", 1)[-1])
    return labels
