"""The ``pilotfish`` command line. Each subcommand is a small function; I/O stays here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def default_store_url() -> str:
    """``pilotfish.db`` in the working directory, as etcd keeps ``default.etcd`` there: data
    survives a restart without any flag, and where it lives is where the operator started it."""
    import os

    return f"sqlite:///{os.path.abspath('pilotfish.db')}"


def _plain_dumper() -> type:
    import yaml

    class PlainDumper(yaml.SafeDumper):
        """No ``&id001`` anchors: every reader of our YAML sees plain, repeated values."""

        def ignore_aliases(self, data: object) -> bool:
            return True

    return PlainDumper


def cmd_validate(args: argparse.Namespace) -> int:
    """Print ``file:line: Kind/ns/name: field.path: message`` per problem; exit 1 on any error."""
    from pilotfish.config.analysis import analyze
    from pilotfish.config.loader import load_paths
    from pilotfish.netpol.analysis import analyze as analyze_netpol

    result = load_paths(args.paths)
    for problem in (*result.problems, *analyze(result.resources), *analyze_netpol(result.resources)):
        print(problem, file=sys.stdout)
    if result.errors:
        print(f"{len(result.errors)} error(s) in {len(args.paths)} path(s)", file=sys.stderr)
        return 1
    print(f"{len(result.resources)} resource(s) valid", file=sys.stderr)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Print a complete Envoy bootstrap (YAML) that points the proxy at pilotfish's ADS."""
    import yaml

    from pilotfish.bootstrap import BootstrapOptions, bootstrap, locality_of, parse_app_port, parse_labels

    _PlainDumper = _plain_dumper()

    default_address = "127.0.0.1:15012" if args.mtls else "127.0.0.1:15010"
    host, _, port = (args.xds_address or default_address).rpartition(":")
    try:
        tls = _xds_tls(args)
        labels = parse_labels(args.labels)
        annotations = parse_labels(args.annotations)
        xds_port = int(port)
        app_ports = dict(parse_app_port(item) for item in args.app_port)
        binds = [
            _ip_address(a, flag)
            for a, flag in ((args.outbound_bind, "--outbound-bind"), (args.gateway_bind, "--gateway-bind"))
        ]
        if args.locality:
            locality_of(args.locality)
    except ValueError as exc:
        print(f"pilotfish bootstrap: {exc}", file=sys.stderr)
        return 2
    opts = BootstrapOptions(
        node_id=args.node_id,
        namespace=args.namespace,
        labels=labels,
        annotations=annotations,
        service_account=args.service_account,
        gateway=args.gateway,
        ip=args.ip,
        xds_host=host or "127.0.0.1",
        xds_port=xds_port,
        delta=args.delta,
        admin_port=args.admin_port,
        probe_port=args.probe_port,
        app_ports=app_ports,
        outbound_bind=binds[0],
        gateway_bind=binds[1],
        tls=tls,
        locality=args.locality,
    )
    sys.stdout.write(yaml.dump(bootstrap(opts), Dumper=_PlainDumper, sort_keys=False))
    return 0


def _xds_tls(args: argparse.Namespace) -> Any:
    """``--mtls``: ``XdsTls`` from the three files, which must all be given; None without it."""
    import os

    from pilotfish.bootstrap import XDS_SERVER_NAME, XdsTls

    files = {
        "--ca-cert-file": args.ca_cert_file,
        "--cert-chain": args.cert_chain,
        "--private-key": args.private_key,
    }
    if not args.mtls:
        if any(files.values()):
            raise ValueError(f"{', '.join(f for f, v in files.items() if v)} need --mtls")
        return None
    missing = [flag for flag, value in files.items() if not value]
    if missing:
        raise ValueError(f"--mtls needs {', '.join(missing)}")
    root, chain, key = (os.path.abspath(value) for value in files.values())
    return XdsTls(root, chain, key, server_name=args.xds_server_name or XDS_SERVER_NAME)


def _ip_address(value: str, flag: str) -> str:
    """``value`` when empty or an IP address; ValueError naming ``flag`` otherwise."""
    import ipaddress

    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{flag} {value!r} is not an IP address") from None
    return value


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
        authz_port=args.authz_port,
        authz_workers=args.authz_workers,
        authz_mode=args.authz_mode,
        credential_key_file=Path(args.credential_key) if args.credential_key else None,
        kong_admin_port=args.kong_admin_port if args.kong_admin_port >= 0 else None,
        debounce_max=args.debounce_max,
        store_url=args.store or default_store_url(),
        admin_tokens=Path(args.admin_tokens) if args.admin_tokens else None,
        auto_register_grace=args.auto_register_grace,
        lease_recovery_grace=args.lease_recovery_grace,
        ca=ca_options(args),
    )

    def ready(cp: ControlPlane) -> None:
        host = cp.opts.host
        print(
            f"READY xds={host}:{cp.xds_port} admin={host}:{cp.admin_port} authz={host}:{cp.authz_port}"
            f" secure-xds={host}:{cp.secure_xds_port}"
            + (f" ca-token={host}:{cp.ca_token_port}" if cp.ca_token_port else "")
            + (f" kong-admin={host}:{cp.kong_admin_port}" if cp.kong_admin_port else ""),
            flush=True,
        )

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


def default_ca_dir() -> str:
    """``$XDG_STATE_HOME/pilotfish/ca`` (``~/.local/state/pilotfish/ca``): the CA key must
    survive restarts (every workload trusts its root) and must not land in whatever directory
    the server happens to be started from."""
    import os

    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "pilotfish", "ca")


def add_ca_flags(p: argparse.ArgumentParser) -> None:
    """``serve``'s CA flags (``pilotfish.mesh_ca.CaOptions``)."""
    p.add_argument("--ca-dir", default=None, help=f"where the CA keeps its key (default {default_ca_dir()})")
    p.add_argument("--ca-cert", default=None, help="operator CA: signing certificate and chain to the root")
    p.add_argument("--ca-key", default=None, help="operator CA: the signing key (with --ca-cert)")
    p.add_argument("--ca-tokens", default=None, help="bootstrap tokens for the CSR API (YAML)")
    p.add_argument("--certs", default=None, help="workload certificate TTLs and DNS certificates (YAML)")
    p.add_argument(
        "--secure-xds-port",
        type=int,
        default=15012,
        help="mTLS port for ADS and the CSR API (0: any free port; negative: off)",
    )
    p.add_argument(
        "--ca-token-port",
        type=int,
        default=None,
        help="server-TLS port where CSRs authenticate with bootstrap tokens (default: off)",
    )


def ca_options(args: argparse.Namespace) -> Any:
    """``CaOptions`` from the flags; exits with a message when --ca-cert/--ca-key are not together."""
    from pathlib import Path

    from pilotfish.certs.store import OperatorCa
    from pilotfish.mesh_ca import CaOptions

    if bool(args.ca_cert) != bool(args.ca_key):
        raise SystemExit("pilotfish serve: --ca-cert and --ca-key go together")
    return CaOptions(
        ca_dir=Path(args.ca_dir or default_ca_dir()),
        operator=OperatorCa(Path(args.ca_cert), Path(args.ca_key)) if args.ca_cert else None,
        tokens_file=Path(args.ca_tokens) if args.ca_tokens else None,
        certs_file=Path(args.certs) if args.certs else None,
        secure_xds_port=args.secure_xds_port if args.secure_xds_port >= 0 else None,
        token_port=args.ca_token_port,
    )


def _lease_seconds(text: str) -> float:
    """A lease's TTL within the bounds every registration obeys (``store.base``)."""
    from pilotfish.store.base import MAX_TTL_SECONDS, MIN_TTL_SECONDS

    value = float(text)
    if not MIN_TTL_SECONDS <= value <= MAX_TTL_SECONDS:
        raise argparse.ArgumentTypeError(f"must be {MIN_TTL_SECONDS:g}..{MAX_TTL_SECONDS:g} seconds")
    return value


def cmd_authz_check(args: argparse.Namespace) -> int:
    """Evaluate one request offline with the server's code; print the decision as one JSON object."""
    import json

    from pilotfish.errors import ConfigError
    from pilotfish.extauthz.check import run_check

    try:
        decision = run_check(
            args.config, args.mesh, args.request, strict=args.strict, authz_mode=args.authz_mode
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(decision, indent=2))
    return 0


def cmd_netpol_check(args: argparse.Namespace) -> int:
    """Decide one connection offline with the enforcement's code; JSON out, exit 0 allow / 1 deny."""
    import json

    from pilotfish.errors import ConfigError
    from pilotfish.netpol.check import run_check

    try:
        decision = run_check([args.config], args.source, args.destination, args.port, args.protocol)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(decision, indent=2))
    return 0 if decision["decision"] == "allow" else 1


def _admin_get(args: argparse.Namespace, path: str) -> object:
    """GET from the admin port, with the bearer token when one is given (``--admin-tokens``)."""
    import json
    import os
    import urllib.request

    token = args.token or os.environ.get(TOKEN_ENV, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{args.admin}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - admin URL
        return json.loads(response.read())


def cmd_proxy_status(args: argparse.Namespace) -> int:
    """A table like ``istioctl proxy-status``: one row per proxy, SYNCED / STALE / NACKED per type."""
    import urllib.error

    try:
        rows = _admin_get(args, "/debug/syncz")
    except urllib.error.HTTPError as exc:
        print(f"pilotfish proxy-status: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    assert isinstance(rows, list)
    types = ("CDS", "EDS", "LDS", "RDS", "SDS")
    table = [("NAME", "KIND", *types, "AUTHZ", "NACK")]
    fallbacks = []
    for row in rows:
        states = tuple(row["types"].get(t, {}).get("state", "NOT SENT") for t in types)
        nacks = "; ".join(
            f"{t}: {_nack_text(info)}" for t, info in row["types"].items() if info.get("state") == "NACKED"
        )
        authz = row.get("authz") or {}
        if authz.get("fallback"):
            fallbacks.append(f"* {row['proxy']}: native enforcement asked for, not used: {authz['fallback']}")
        table.append(
            (
                row["proxy"],
                row["kind"],
                *states,
                authz.get("mode", "") + ("*" if authz.get("fallback") else ""),
                nacks,
            )
        )
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + str(r[-1]))
    for line in fallbacks:
        print(line)
    return 0


def _nack_text(info: dict[str, Any]) -> str:
    """Each rejected resource with Envoy's text (``name: message``), else the last NACK's text."""
    rejected = info.get("rejected") or {}
    if rejected:
        return "; ".join(f"{name}: {nack['message']}" for name, nack in sorted(rejected.items()))
    return str((info.get("nack") or {}).get("message", ""))


def cmd_proxy_config(args: argparse.Namespace) -> int:
    """The config pilotfish sent to one proxy, for one type (JSON, like istioctl's ``-o json``)."""
    import json
    import urllib.error
    import urllib.parse

    params = {"proxyID": args.node} | ({} if args.type == "all" else {"type": args.type})
    query = urllib.parse.urlencode(params)
    try:
        dump = _admin_get(args, f"/debug/config_dump?{query}")
    except urllib.error.HTTPError as exc:
        print(f"pilotfish proxy-config: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    print(json.dumps(dump, indent=2, sort_keys=True))
    return 0


# ---- the resource and registration API (kubectl-like) ------------------------------------------

DEFAULT_ADMIN = "127.0.0.1:15014"
TOKEN_ENV = "PILOTFISH_TOKEN"


class ApiFailure(Exception):
    """The admin API answered with an error (or could not be reached); ``str`` is the message."""


def _api(args: argparse.Namespace, method: str, path: str, body: bytes | None = None) -> Any:
    """One admin API call; the decoded JSON on success, ``ApiFailure`` with kubectl's wording else."""
    import json
    import os
    import urllib.error
    import urllib.request

    token = args.token or os.environ.get(TOKEN_ENV, "")
    headers = {"Content-Type": "application/yaml"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(f"http://{args.admin}{path}", body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - admin URL
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ApiFailure(_error_text(exc.code, exc.read())) from None
    except OSError as exc:
        raise ApiFailure(f"cannot reach the pilotfish admin API at {args.admin}: {exc}") from None


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}


def _error_text(status: int, raw: bytes) -> str:
    import json

    try:
        body = json.loads(raw)
    except ValueError:
        body = {"error": raw.decode(errors="replace")}
    problems = [p.get("text", "") for p in body.get("problems", [])] if isinstance(body, dict) else []
    message = body.get("error", "") if isinstance(body, dict) else str(body)
    reason = _REASONS.get(status, "ServiceUnavailable" if status == 503 else str(status))
    return "\n".join([f"Error from server ({reason}): {message}", *problems])


def _run_api(command: Callable[[], int]) -> int:
    try:
        return command()
    except ApiFailure as exc:
        print(exc, file=sys.stderr)
        return 1


def _read_file(name: str) -> str:
    from pathlib import Path

    return sys.stdin.read() if name == "-" else Path(name).read_text()


def cmd_apply(args: argparse.Namespace) -> int:
    """``kubectl apply -f``: each file is validated by the server as a whole (nothing is written
    if any document is invalid); prints ``Kind/ns/name created|configured|unchanged``."""
    from urllib.parse import quote

    def run() -> int:
        for name in args.filename:
            result = _api(args, "POST", f"/apis?file={quote(name)}", _read_file(name).encode())
            for warning in result.get("warnings", []):
                print(warning["text"], file=sys.stderr)
            for item in result["applied"]:
                print(f"{item['kind']}/{item['namespace']}/{item['name']} {item['result']}")
        return 0

    return _run_api(run)


def cmd_delete(args: argparse.Namespace) -> int:
    """``kubectl delete -f``: deletes every document the files name; exit 1 if any was missing."""
    import functools

    from pilotfish.config.loader import namespace_of
    from pilotfish.config.source import parse_documents
    from pilotfish.errors import ConfigError

    failed = 0
    for name in args.filename:
        try:
            docs = parse_documents(_read_file(name), name)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        for doc in docs:
            metadata = doc.data.get("metadata") or {}
            kind = str(doc.data.get("kind"))
            key = (kind, namespace_of(kind, metadata.get("namespace")), str(metadata.get("name")))
            failed += _run_api(functools.partial(_delete_one, args, *key))
    return 1 if failed else 0


def _delete_one(args: argparse.Namespace, kind: str, namespace: str, name: str) -> int:
    _api(args, "DELETE", f"/apis/{kind}/{namespace}/{name}")
    print(f"{kind}/{namespace}/{name} deleted")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """``kubectl get KIND [NAME]``: a table, or the documents with ``-o yaml|json``."""

    def run() -> int:
        namespace = None if args.all_namespaces else (args.namespace or "default")
        if args.name:
            result = _api(args, "GET", f"/apis/{args.kind}/{namespace or 'default'}/{args.name}")
        else:
            query = f"?namespace={namespace}" if namespace else ""
            result = _api(args, "GET", f"/apis/{args.kind}{query}")
        _print_documents(result, args.output)
        return 0

    return _run_api(run)


def _print_documents(result: Any, output: str | None) -> None:
    import json

    import yaml

    if output == "json":
        print(json.dumps(result, indent=2, sort_keys=True))
    elif output == "yaml":
        sys.stdout.write(yaml.dump(result, Dumper=_plain_dumper(), sort_keys=False))
    else:
        items = result.get("items", [result]) if result.get("kind") == "List" else [result]
        rows = [("NAMESPACE", "NAME", "REVISION")] + [
            (
                d["metadata"].get("namespace", ""),
                d["metadata"]["name"],
                d["metadata"].get("resourceVersion", ""),
            )
            for d in items
        ]
        _print_table(rows)


def _print_table(rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _resource_path(ref: str) -> str:
    """``KIND/NAMESPACE/NAME`` → its API path; ValueError for anything else."""
    parts = ref.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{ref!r} is not KIND/NAMESPACE/NAME")
    return "/apis/" + "/".join(parts)


def cmd_history(args: argparse.Namespace) -> int:
    """Every revision that wrote one resource: REVISION ACTION ACTOR WHEN."""
    import datetime

    def run() -> int:
        result = _api(args, "GET", _resource_path(args.ref) + "/history")
        rows: list[tuple[object, ...]] = [("REVISION", "ACTION", "ACTOR", "AT")]
        for entry in result["history"]:
            at = datetime.datetime.fromtimestamp(entry["at"], datetime.UTC).isoformat(timespec="seconds")
            rows.append((entry["revision"], entry["action"], entry["actor"], at))
        _print_table(rows)
        return 0

    return _usage_errors(args, run)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Write the document revision ``--to`` wrote, as a new revision."""
    import json

    def run() -> int:
        body = json.dumps({"revision": args.to}).encode()
        done = _api(args, "POST", _resource_path(args.ref) + "/rollback", body)["rolledBack"]
        print(f"{args.ref} rolled back to revision {done['to']} (revision {done['revision']})")
        return 0

    return _usage_errors(args, run)


def _usage_errors(args: argparse.Namespace, run: Callable[[], int]) -> int:
    try:
        return _run_api(run)
    except ValueError as exc:
        print(f"pilotfish {args.command}: {exc}", file=sys.stderr)
        return 2


def cmd_register(args: argparse.Namespace) -> int:
    """Take out a lease for one target; with ``--keepalive``, renew it until interrupted, then
    deregister (so the target leaves the mesh before it stops)."""
    import json

    from pilotfish.bootstrap import parse_labels

    try:
        labels = parse_labels(args.labels)
    except ValueError as exc:
        print(f"pilotfish register: {exc}", file=sys.stderr)
        return 2
    body = {"service": args.service, "address": args.address, "port": args.port, "labels": labels}
    body |= {"weight": args.weight, "ttlSeconds": args.ttl} | ({"id": args.id} if args.id else {})

    if args.keepalive:
        return _keepalive(args, body)

    def run() -> int:
        lease = _api(args, "POST", "/registrations", json.dumps(body).encode())
        print(f"registered {lease['id']} (ttl {lease['ttlSeconds']:g}s)")
        return 0

    return _run_api(run)


def _keepalive(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Renew until SIGINT/SIGTERM, surviving server restarts (``keepalive``); then deregister."""
    import os
    import signal
    import threading

    from pilotfish.keepalive import AdminClient, Keepalive

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    client = AdminClient(args.admin, args.token or os.environ.get(TOKEN_ENV, ""))
    say = partial(print, flush=True)
    return Keepalive(client, body, stop, say, partial(print, file=sys.stderr, flush=True)).run()


def _add_registry_commands(sub: Any) -> None:
    """Parser entries of the commands above; each talks to ``--admin`` with ``--token``."""

    def command(name: str, handler: Handler, helptext: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=helptext)
        p.add_argument("--admin", default=DEFAULT_ADMIN, help="HOST:PORT of pilotfish's admin API")
        p.add_argument("--token", default="", help=f"bearer token (default: ${TOKEN_ENV})")
        p.set_defaults(handler=handler)
        return p

    for name, handler, helptext in (
        ("apply", cmd_apply, "create or update resources from files"),
        ("delete", cmd_delete, "delete the resources files name"),
    ):
        p = command(name, handler, helptext)
        p.add_argument("-f", "--filename", action="append", required=True, help="YAML file, or - for stdin")
    p = command("get", cmd_get, "show stored resources")
    p.add_argument("kind", help="e.g. DestinationRule")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default=None)
    p = command("history", cmd_history, "every revision of one resource")
    p.add_argument("ref", metavar="KIND/NAMESPACE/NAME")
    p = command("rollback", cmd_rollback, "write an earlier revision of a resource again")
    p.add_argument("ref", metavar="KIND/NAMESPACE/NAME")
    p.add_argument("--to", type=int, required=True, metavar="REVISION")
    p = command("register", cmd_register, "register a workload as an endpoint of a service")
    p.add_argument("--service", required=True, help="service host, or WorkloadGroup/NAMESPACE/NAME")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--labels", default="", help="k=v,k2=v2")
    p.add_argument("--weight", type=int, default=1)
    p.add_argument("--ttl", type=float, default=30.0, help="lease seconds")
    p.add_argument("--id", default="", help="default ADDRESS:PORT@SERVICE")
    p.add_argument("--keepalive", action="store_true", help="renew until interrupted, then deregister")


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
    p.add_argument(
        "--annotations",
        default="",
        help="k=v,... node metadata ANNOTATIONS "
        "(pilotfish.io/authz-mode=native|ext_authz overrides serve's --authz-mode)",
    )
    p.add_argument("--service-account", default="default")
    p.add_argument("--gateway", action="store_true", help="a gateway (router) rather than a sidecar")
    p.add_argument("--ip", default="127.0.0.1", help="the workload's IP, used in the node id")
    p.add_argument(
        "--xds-address",
        default=None,
        help="HOST:PORT of pilotfish's xDS server (default 127.0.0.1:15010, with --mtls 127.0.0.1:15012)",
    )
    p.add_argument("--mtls", action="store_true", help="use the mTLS xDS port, with a client certificate")
    p.add_argument("--ca-cert-file", metavar="ROOT.pem", help="the mesh root to trust (--mtls)")
    p.add_argument("--cert-chain", metavar="FILE", help="the proxy's certificate chain (--mtls)")
    p.add_argument("--private-key", metavar="FILE", help="the proxy's private key (--mtls)")
    p.add_argument(
        "--xds-server-name",
        default=None,
        help="the name the xDS server's certificate must carry (default pilotfish.istio-system.svc)",
    )
    p.add_argument("--delta", action="store_true", help="use delta (incremental) ADS")
    p.add_argument("--admin-port", type=int, default=15000)
    p.add_argument(
        "--probe-port",
        type=int,
        default=None,
        help="add a listener that routes to the cluster named in the x-target-cluster header",
    )
    p.add_argument(
        "--app-port",
        action="append",
        default=[],
        metavar="PORT=APPPORT",
        help="the app behind workload port PORT listens on 127.0.0.1:APPPORT (repeatable; APP_PORTS)",
    )
    p.add_argument(
        "--outbound-bind",
        default="",
        metavar="ADDR",
        help="address of outbound listeners (default 127.0.0.1)",
    )
    p.add_argument(
        "--gateway-bind", default="", metavar="ADDR", help="address of gateway listeners (default the --ip)"
    )
    p.add_argument(
        "--locality",
        default="",
        metavar="REGION/ZONE/SUBZONE",
        help="the proxy's locality (node.locality): locality load balancing prefers endpoints near it",
    )
    p.set_defaults(handler=cmd_bootstrap)

    p = sub.add_parser("serve", help="serve xDS and the admin API")
    p.add_argument("--config", help="directory of Istio YAML, watched for changes")
    p.add_argument("--mesh", help="MeshConfig YAML (rootNamespace, trustDomain, extensionProviders, ...)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--xds-port", type=int, default=15010)
    p.add_argument("--admin-port", type=int, default=15014)
    p.add_argument(
        "--authz-port", type=int, default=9191, help="ext_authz Check server port (0: any free port)"
    )
    p.add_argument(
        "--authz-workers",
        type=int,
        default=1,
        help="Check server processes sharing the port (0: the Check server runs elsewhere)",
    )
    p.add_argument(
        "--authz-mode",
        choices=("ext_authz", "native"),
        default="ext_authz",
        help="enforce RequestAuthentication/AuthorizationPolicy in the Check server (ext_authz) or in "
        "Envoy's jwt_authn + RBAC filters (native); a workload may override it (bootstrap --annotations)",
    )
    p.add_argument(
        "--kong-admin-port",
        type=int,
        default=8001,
        help="Kong's Admin API (consumers, plugins, upstreams, targets; 0: any free port; negative: off)",
    )
    p.add_argument(
        "--credential-key",
        default=None,
        help="key file for Consumer credentials (API key HMACs, sealed JWT secrets); replicas share "
        "it (default: credential.key in --ca-dir, created when missing)",
    )
    p.add_argument("--debounce-after", type=float, default=0.1, help="quiet period before a push (seconds)")
    p.add_argument("--debounce-max", type=float, default=10.0, help="longest delay of a push under churn")
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--store",
        default=None,
        help="datastore URL: sqlite:///ABS/PATH.db or postgresql://user@host/db (default ./pilotfish.db)",
    )
    p.add_argument("--admin-tokens", default=None, help="RBAC tokens file for the admin API (YAML)")
    p.add_argument(
        "--auto-register-grace",
        type=_lease_seconds,
        default=10.0,
        help="seconds an auto-registered proxy stays after it disconnects (Istio: 10s; a lease: 1..86400)",
    )
    p.add_argument(
        "--lease-recovery-grace",
        type=float,
        default=10.0,
        help="seconds to let workloads renew after a store outage or a restart before reaping "
        "leases that lapsed meanwhile",
    )
    add_ca_flags(p)
    p.set_defaults(handler=cmd_serve)

    authz = sub.add_parser("authz", help="authorization tools").add_subparsers(
        dest="authz_command", required=True
    )
    p = authz.add_parser("check", help="evaluate one request offline, as the ext_authz server would")
    p.add_argument("--config", required=True, help="directory of Istio YAML")
    p.add_argument("--mesh", default=None, help="MeshConfig YAML")
    p.add_argument("--request", required=True, help="request JSON file (see README)")
    p.add_argument("--strict", action="store_true", help="RFC 8725 strict JWT checks instead of Envoy parity")
    p.add_argument(
        "--authz-mode",
        choices=("ext_authz", "native"),
        default="ext_authz",
        help="serve's --authz-mode, to report which mode the workload would use",
    )
    p.set_defaults(handler=cmd_authz_check)

    netpol = sub.add_parser("netpol", help="Kubernetes NetworkPolicy tools").add_subparsers(
        dest="netpol_command", required=True
    )
    p = netpol.add_parser("check", help="decide one connection offline, as the sidecars enforce it")
    p.add_argument("--config", required=True, help="directory of YAML (policies, namespaces, workloads)")
    p.add_argument("--from", dest="source", required=True, help="workload (ns/name, name) or IP")
    p.add_argument("--to", dest="destination", required=True, help="workload (ns/name, name) or IP")
    p.add_argument("--port", type=int, required=True, help="destination port")
    p.add_argument("--protocol", default="TCP", choices=["TCP", "UDP", "SCTP"])
    p.set_defaults(handler=cmd_netpol_check)

    for name, handler, helptext in (
        ("proxy-status", cmd_proxy_status, "push status of every connected proxy"),
        ("proxy-config", cmd_proxy_config, "the config sent to one proxy"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--admin", default="127.0.0.1:15014", help="HOST:PORT of pilotfish's admin API")
        p.add_argument("--token", default="", help=f"bearer token (default: ${TOKEN_ENV})")
        if name == "proxy-config":
            p.add_argument("node", help="proxy id (as in proxy-status)")
            p.add_argument("type", choices=["cluster", "endpoint", "listener", "route", "secret", "all"])
        p.set_defaults(handler=handler)
    _add_registry_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
