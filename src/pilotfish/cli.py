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
        probe_port=args.probe_port,
    )
    sys.stdout.write(yaml.dump(bootstrap(opts), Dumper=_PlainDumper, sort_keys=False))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve xDS and the admin API until SIGINT/SIGTERM. Prints one ``READY`` line once bound."""
    import asyncio
    import contextlib
    import logging
    import signal
    from pathlib import Path

    from pilotfish.app import ControlPlane, ServeOptions, serve_forever
    from pilotfish.errors import ConfigError

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    opts = ServeOptions(
        config_dir=Path(args.config) if args.config else None,
        mesh_file=Path(args.mesh) if args.mesh else None,
        host=args.host,
        xds_port=args.xds_port,
        admin_port=args.admin_port,
        debounce_quiet=args.debounce_after,
        debounce_max=args.debounce_max,
    )

    def ready(cp: ControlPlane) -> None:
        print(f"READY xds={cp.opts.host}:{cp.xds_port} admin={cp.opts.host}:{cp.admin_port}", flush=True)

    async def main() -> None:
        task = asyncio.ensure_future(serve_forever(opts, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def cmd_authz_check(args: argparse.Namespace) -> int:
    """Evaluate one request offline with the server's code; print the decision as one JSON object."""
    import json

    from pilotfish.errors import ConfigError
    from pilotfish.extauthz.check import run_check

    try:
        decision = run_check(args.config, args.mesh, args.request, strict=args.strict)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(decision, indent=2))
    return 0


def _admin_get(address: str, path: str) -> object:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:  # noqa: S310 - admin URL
        return json.loads(response.read())


def cmd_proxy_status(args: argparse.Namespace) -> int:
    """A table like ``istioctl proxy-status``: one row per proxy, SYNCED / STALE / NACKED per type."""
    rows = _admin_get(args.admin, "/debug/syncz")
    assert isinstance(rows, list)
    types = ("CDS", "EDS", "LDS", "RDS", "SDS")
    table = [("NAME", "KIND", *types, "NACK")]
    for row in rows:
        states = tuple(row["types"].get(t, {}).get("state", "NOT SENT") for t in types)
        nacks = "; ".join(
            f"{t}: {info['nack']['message']}"
            for t, info in row["types"].items()
            if info.get("state") == "NACKED"
        )
        table.append((row["proxy"], row["kind"], *states, nacks))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + str(r[-1]))
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    """The config pilotfish sent to one proxy, for one type (JSON, like istioctl's ``-o json``)."""
    import json
    import urllib.error
    import urllib.parse

    params = {"proxyID": args.node} | ({} if args.type == "all" else {"type": args.type})
    query = urllib.parse.urlencode(params)
    try:
        dump = _admin_get(args.admin, f"/debug/config_dump?{query}")
    except urllib.error.HTTPError as exc:
        print(f"pilotfish proxy-config: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    print(json.dumps(dump, indent=2, sort_keys=True))
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
    p.add_argument(
        "--probe-port",
        type=int,
        default=None,
        help="add a listener that routes to the cluster named in the x-target-cluster header",
    )
    p.set_defaults(handler=cmd_bootstrap)

    p = sub.add_parser("serve", help="serve xDS and the admin API")
    p.add_argument("--config", help="directory of Istio YAML, watched for changes")
    p.add_argument("--mesh", help="MeshConfig YAML (rootNamespace, trustDomain, extensionProviders, ...)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--xds-port", type=int, default=15010)
    p.add_argument("--admin-port", type=int, default=15014)
    p.add_argument("--debounce-after", type=float, default=0.1, help="quiet period before a push (seconds)")
    p.add_argument("--debounce-max", type=float, default=10.0, help="longest delay of a push under churn")
    p.add_argument("--log-level", default="info")
    p.set_defaults(handler=cmd_serve)

    authz = sub.add_parser("authz", help="authorization tools").add_subparsers(dest="authz_command", required=True)
    p = authz.add_parser("check", help="evaluate one request offline, as the ext_authz server would")
    p.add_argument("--config", required=True, help="directory of Istio YAML")
    p.add_argument("--mesh", default=None, help="MeshConfig YAML")
    p.add_argument("--request", required=True, help="request JSON file (see README)")
    p.add_argument("--strict", action="store_true", help="RFC 8725 strict JWT checks instead of Envoy parity")
    p.set_defaults(handler=cmd_authz_check)

    for name, handler, helptext in (
        ("proxy-status", cmd_proxy_status, "push status of every connected proxy"),
        ("proxy-config", cmd_proxy_config, "the config sent to one proxy"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--admin", default="127.0.0.1:15014", help="HOST:PORT of pilotfish's admin API")
        if name == "proxy-config":
            p.add_argument("node", help="proxy id (as in proxy-status)")
            p.add_argument("type", choices=["cluster", "endpoint", "listener", "route", "secret", "all"])
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
