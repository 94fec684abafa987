"""The `telechat-operator` command: run the operator, or render a resource's objects without a cluster."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from .api import constants as c
from .config import OperatorConfig
from .controller.kind import Kind
from .kinds import KINDS
from .render.objects import Owner
from .validation import SpecError
from .yamlio import dump_all

KINDS_BY_NAME: dict[str, Kind] = {kind.kind: kind for kind in KINDS}

RENDER_HEADER = (
    "# Rendered by telechat-operator {version} for {kind} {namespace}/{name}.\n"
    "# The operator applies these with server-side apply and adds an ownerReference to the {kind}.\n"
)


def _load_documents(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_documents(
    docs: list[dict[str, Any]], config: OperatorConfig, namespace: str
) -> tuple[str, list[str]]:
    """Multi-document YAML of every object, and the warnings; raises SpecError naming the resource."""
    from . import __version__

    out: list[str] = []
    warnings: list[str] = []
    for doc in docs:
        kind = KINDS_BY_NAME.get(str(doc.get("kind"))) if doc.get("apiVersion") == c.API_VERSION else None
        if kind is None:
            continue
        meta = doc.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace") or namespace
        try:
            checked = kind.check(doc.get("spec"), config)
        except SpecError as exc:
            raise SpecError([f"{doc['kind']} {ns}/{name}: {e}" for e in exc.errors]) from None
        warnings.extend(f"{name}: {w}" for w in checked.notes)
        objects = kind.render(checked, Owner(c.API_VERSION, kind.kind, name, ns))
        out.append(RENDER_HEADER.format(version=__version__, kind=doc["kind"], namespace=ns, name=name))
        out.append(dump_all(objects))
    return "".join(out), warnings


def cmd_render(args: argparse.Namespace) -> int:
    config = OperatorConfig.load()
    try:
        docs = _load_documents(args.file)
        text, warnings = render_documents(docs, config, args.namespace)
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"note: {warning}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


def cmd_crds(_: argparse.Namespace) -> int:
    from .crdgen import all_crds, dump

    sys.stdout.write("---\n".join(dump(crd) for crd in all_crds().values()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from .controller.leader import options_from_args
    from .process import Runtime, WebhookOptions, build_registry

    config = OperatorConfig.load()
    if args.namespace:
        config.namespaces = list(args.namespace)
    if args.resync is not None:
        config.resync_seconds = args.resync
    kopf.configure(verbose=args.verbose, debug=args.debug, log_prefix=True)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not (args.verbose or args.debug):
        # kopf logs every handler call at INFO (nine lines per created resource); problems still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    webhook = WebhookOptions(
        mode=args.webhook,
        host=args.webhook_host,
        port=args.webhook_port,
        certfile=args.webhook_cert,
        keyfile=args.webhook_key,
    )
    # With --leader-elect, reconcile workers wait for the Lease; watches, health and the webhook run on
    # every replica.
    leader = options_from_args(args) if args.leader_elect else None
    registry = build_registry(Runtime(config=config, webhook=webhook, leader=leader))
    kopf.run(
        registry=registry,
        standalone=args.standalone,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=args.liveness,
        peering_name="telechat-operator",
        priority=args.priority,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telechat-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig or in-cluster")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable)")
    run.add_argument("--standalone", action="store_true", help="no peering with other operator replicas")
    run.add_argument("--priority", type=int, default=0, help="peering priority (highest runs, others pause)")
    run.add_argument("--liveness", default=None, help="health endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--resync", type=float, default=None, help="seconds between full resyncs")
    run.add_argument(
        "--webhook",
        choices=["off", "dev", "server"],
        default="off",
        help="dev: self-signed, registered by the operator; server: certificates from files",
    )
    run.add_argument("--webhook-host", default="127.0.0.1")
    run.add_argument("--webhook-port", type=int, default=9443)
    run.add_argument("--webhook-cert", default=None)
    run.add_argument("--webhook-key", default=None)
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--debug", action="store_true")
    from .controller.leader import add_arguments as add_leader_arguments

    add_leader_arguments(run)
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="print the objects the operator would apply, without a cluster")
    render.add_argument(
        "-f", "--file", required=True, help="TeleChatDeployment or TeleChatBatchJob YAML ('-' for stdin)"
    )
    render.add_argument("-n", "--namespace", default="default", help="namespace when the file names none")
    render.set_defaults(func=cmd_render)

    crds = sub.add_parser("crds", help="print the CRDs")
    crds.set_defaults(func=cmd_crds)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
