"""The ``pilotfish`` command line. Each subcommand is a small function; I/O stays here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _plain_dumper() -> type:
    import yaml

    class PlainDumper(yaml.SafeDumper):
        """No ``&id001`` anchors: every reader of our YAML sees plain, repeated values."""

        def ignore_aliases(self, data: object) -> bool:
            return True

    return PlainDumper


def cmd_validate(args: argparse.Namespace) -> int:
    """Print ``file:line: Kind/ns/name: field.path: message`` per problem; exit 1 on any error."""
    from pilotfish.config.loader import load_paths

    result = load_paths(args.paths)
    for problem in result.problems:
        print(problem, file=sys.stdout)
    if result.errors:
        print(f"{len(result.errors)} error(s) in {len(args.paths)} path(s)", file=sys.stderr)
        return 1
    print(f"{len(result.resources)} resource(s) valid", file=sys.stderr)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Print a complete Envoy bootstrap (YAML) that points the proxy at pilotfish's ADS."""
    import yaml

    from pilotfish.bootstrap import BootstrapOptions, bootstrap, parse_labels

    _PlainDumper = _plain_dumper()

    host, _, port = args.xds_address.rpartition(":")
    try:
        labels = parse_labels(args.labels)
        xds_port = int(port)
    except ValueError as exc:
        print(f"pilotfish bootstrap: {exc}", file=sys.stderr)
        return 2
    opts = BootstrapOptions(
        node_id=args.node_id,
        namespace=args.namespace,
        labels=labels,
        service_account=args.service_account,
        gateway=args.gateway,
        ip=args.ip,
        xds_host=host or "127.0.0.1",
        xds_port=xds_port,
        delta=args.delta,
        admin_port=args.admin_port,
    )
    sys.stdout.write(yaml.dump(bootstrap(opts), Dumper=_PlainDumper, sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pilotfish", description="Istio-compatible control plane for Envoy")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate Istio YAML files or directories")
    p.add_argument("paths", nargs="+")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("bootstrap", help="print an Envoy bootstrap that connects to pilotfish")
    p.add_argument("--node-id", required=True, help="full Istio node id, or the workload name")
    p.add_argument("--namespace", required=True)
    p.add_argument("--labels", default="", help="k=v,k2=v2")
    p.add_argument("--service-account", default="default")
    p.add_argument("--gateway", action="store_true", help="a gateway (router) rather than a sidecar")
    p.add_argument("--ip", default="127.0.0.1", help="the workload's IP, used in the node id")
    p.add_argument("--xds-address", default="127.0.0.1:15010", help="HOST:PORT of pilotfish's xDS server")
    p.add_argument("--delta", action="store_true", help="use delta (incremental) ADS")
    p.add_argument("--admin-port", type=int, default=15000)
    p.set_defaults(handler=cmd_bootstrap)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
