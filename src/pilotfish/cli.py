"""The ``pilotfish`` command line. Each subcommand is a small function; I/O stays here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pilotfish", description="Istio-compatible control plane for Envoy")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate Istio YAML files or directories")
    p.add_argument("paths", nargs="+")
    p.set_defaults(handler=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
