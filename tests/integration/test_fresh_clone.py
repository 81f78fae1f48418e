"""The repository stands alone: a fresh clone of HEAD, with nothing beside it (no shared folder
next to the clone), collects the whole suite without errors. A clone once stopped at collection because a test
oracle lived outside the repository, so ``make test`` ran 0 tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MIN_TESTS = 3000  # the suite has several thousand; a broken collection finds far fewer


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_a_fresh_clone_collects_the_suite_with_nothing_beside_it(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.fail(f"{REPO} is not a git checkout: this test clones the repository it runs from")
    head = git("rev-parse", "HEAD").strip()
    clone = tmp_path / "pilotfish"
    git("clone", "--quiet", "--no-checkout", str(REPO), str(clone), cwd=tmp_path)
    git("checkout", "--quiet", head, cwd=clone)
    assert not (clone.parent / "shared").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pilotfish"], "nothing beside the clone"

    # The project's venv python, importing the clone's own sources (ahead of the editable install).
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}
    env.pop("PYTEST_ADDOPTS", None)
    where = subprocess.run(
        [sys.executable, "-c", "import pilotfish; print(pilotfish.__file__)"],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone), where

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join(collected.stdout.splitlines()[-15:]) + collected.stderr[-2000:]
    assert collected.returncode == 0, tail
    summary = re.search(r"(\d+) tests? collected", collected.stdout)
    assert summary, tail
    assert "error" not in collected.stdout.splitlines()[-1].lower(), tail
    count = int(summary.group(1))
    print(f"\nfresh clone of {head[:10]}: {count} tests collected")
    assert count >= MIN_TESTS, tail
