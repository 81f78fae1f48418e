"""Everything under examples/ validates clean: the examples are what users copy first."""

from __future__ import annotations

from pathlib import Path

from pilotfish.cli import main
from pilotfish.config.loader import load_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_validate_clean() -> None:
    result = load_paths([EXAMPLES])
    assert not result.problems, "\n".join(map(str, result.problems))
    kinds = {r.kind for r in result.resources}
    assert {"ServiceEntry", "WorkloadEntry", "DestinationRule"} <= kinds


def test_validate_command_exits_0_on_examples() -> None:
    assert main(["validate", str(EXAMPLES)]) == 0
