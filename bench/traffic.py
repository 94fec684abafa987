"""API traffic from the API server's own counters: ``apiserver_request_total`` deltas, attributed.

The metric has no client label, so requests are attributed by what each client sends:

- the driver counts its own requests (bench.kubeapi.Api) and they are subtracted first;
- the controller under test (operator or floor) is the only client that reads or writes the resource's
  children, secrets and the TeleChatDeployment besides the driver: every remaining GET, LIST, APPLY,
  PATCH, POST or DELETE on telechatdeployments (and its status), configmaps, services,
  persistentvolumeclaims, secrets, and APPLY/PATCH on deployments is its own;
- the cluster's controllers also write deployments (PUT: the revision annotation and status) and post
  Events, so PUT deployments is theirs, and Events are attributed by listing the namespace's Events and
  counting those whose source is the operator (the floor posts none);
- WATCH requests are left out: the server counts a watch when it closes, not per event.

Everything else in the delta (ReplicaSets, pods, leases, nodes) is the cluster's and reported as "other".
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .kubeapi import RequestKey

WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"}
READ_VERBS = {"GET", "LIST"}
OWNED = {"telechatdeployments", "configmaps", "services", "persistentvolumeclaims", "secrets"}
OPERATOR_COMPONENT = "telechat-operator"

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_request_totals(text: str) -> Counter[tuple[RequestKey, str]]:
    """((verb, resource, subresource), code) -> count, summed over group, version, scope."""
    totals: Counter[tuple[RequestKey, str]] = Counter()
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group("labels")))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        totals[(key, labels.get("code", ""))] += int(float(m.group("value")))
    return totals


def key_name(key: RequestKey) -> str:
    verb, resource, sub = key
    return f"{verb} {resource}/{sub}" if sub else f"{verb} {resource}"


def _controller_owns(key: RequestKey) -> bool:
    verb, resource, sub = key
    if verb == "WATCH":
        return False
    if resource in OWNED:
        return verb in WRITE_VERBS or verb in READ_VERBS
    if resource == "deployments" and not sub:
        return verb in {"APPLY", "PATCH", "GET", "LIST", "DELETE"}
    return False


def attribute(
    before: Counter[tuple[RequestKey, str]],
    after: Counter[tuple[RequestKey, str]],
    driver: Counter[RequestKey],
    operator_events: int,
    resources: int,
    window_s: float,
) -> dict[str, Any]:
    """Split the server's request delta into driver, controller under test and the rest of the cluster."""
    delta: Counter[RequestKey] = Counter()
    errors: Counter[str] = Counter()
    for (key, code), value in after.items():
        diff = value - before.get((key, code), 0)
        if diff:
            delta[key] += diff
            if not code.startswith("2") and key[0] != "WATCH":
                errors[f"{key_name(key)} {code}"] += diff
    remainder = Counter({k: v - driver.get(k, 0) for k, v in delta.items()})
    controller: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for key, value in remainder.items():
        if value <= 0 or key[1] == "":
            continue  # non-resource requests (discovery, /metrics), or fully the driver's
        if _controller_owns(key):
            controller[key_name(key)] += value
        elif key == ("POST", "events", "") and operator_events:
            mine = min(value, operator_events)
            controller[key_name(key)] += mine
            if value > mine:
                other[key_name(key)] += value - mine
        elif key[0] != "WATCH":
            other[key_name(key)] += value
    writes = sum(v for k, v in controller.items() if k.split(" ")[0] in WRITE_VERBS)
    reads = sum(v for k, v in controller.items() if k.split(" ")[0] in READ_VERBS)
    n = max(resources, 1)
    return {
        "window_s": round(window_s, 2),
        "resources": resources,
        "writes": writes,
        "reads": reads,
        "writes_per_resource": round(writes / n, 3),
        "reads_per_resource": round(reads / n, 3),
        "by_request": dict(sorted(controller.items())),
        "by_request_per_resource": {k: round(v / n, 3) for k, v in sorted(controller.items())},
        "driver": {key_name(k): v for k, v in sorted(driver.items()) if k[0] != "WATCH"},
        "other_cluster": dict(other.most_common(12)),
        "errors": dict(errors),
    }


HEARTBEATS = {"leases", "nodes", ""}


def busy_requests(before: Counter[tuple[RequestKey, str]], after: Counter[tuple[RequestKey, str]]) -> int:
    """Requests between two scrapes other than watches, heartbeats (leases, node status) and /metrics."""
    total = 0
    for (key, code), value in after.items():
        if key[0] == "WATCH" or key[1] in HEARTBEATS or key[:2] == ("PATCH", "events"):
            continue
        total += value - before.get((key, code), 0)
    return total


def count_operator_events(events: dict[str, Any] | None) -> int:
    total = 0
    for item in (events or {}).get("items") or []:
        source = (item.get("source") or {}).get("component") or item.get("reportingComponent")
        if source == OPERATOR_COMPONENT:
            total += 1
    return total
