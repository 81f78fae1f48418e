"""Metric names on both sides: what Grafana dashboards and rules name, what /metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"\b(pilotfish_[a-zA-Z0-9_]+)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def dashboard_metrics(folder: Path) -> set[str]:
    """Every ``pilotfish_*`` name in the PromQL of every dashboard under ``folder``."""
    names: set[str] = set()
    for path in sorted(folder.glob("*.json")):
        for expr in _exprs(json.loads(path.read_text())):
            names.update(_NAME.findall(expr))
    return names


def exported_names(exposition: str) -> set[str]:
    """The series names an exposition offers (a histogram's _bucket/_sum/_count included), from
    its TYPE lines — a labelled family with no samples yet still counts: it exists."""
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if line.startswith("# TYPE ") and len(parts) == 4:
            names.add(parts[2])
            if parts[3] == "histogram":
                names.update(parts[2] + suffix for suffix in _HISTOGRAM_SUFFIXES)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
