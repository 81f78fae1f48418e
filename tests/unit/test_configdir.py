from __future__ import annotations

from pathlib import Path

from pilotfish.configdir import ConfigDirectory

GOOD = """apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: prod}
spec: {address: 10.0.0.1, labels: {version: v1}}
"""
BAD = GOOD.replace("address: 10.0.0.1", "address: 10.0.0.1, weigth: 2")


def test_a_file_with_errors_keeps_its_last_good_resources(tmp_path: Path) -> None:
    seen: list[int] = []
    source = ConfigDirectory(tmp_path, on_problems=lambda problems: seen.append(len(problems)))
    (tmp_path / "we.yaml").write_text(GOOD)
    assert [r.spec.address for r in source.load()] == ["10.0.0.1"]
    (tmp_path / "we.yaml").write_text(BAD)
    assert [r.spec.address for r in source.load()] == ["10.0.0.1"]
    assert seen == [0, 1]
    (tmp_path / "we.yaml").write_text(GOOD.replace("10.0.0.1", "10.0.0.2"))
    assert [r.spec.address for r in source.load()] == ["10.0.0.2"]


def test_a_new_file_with_errors_contributes_nothing_and_removal_removes(tmp_path: Path) -> None:
    source = ConfigDirectory(tmp_path)
    (tmp_path / "bad.yaml").write_text("kind: [")
    (tmp_path / "good.yaml").write_text(GOOD)
    assert len(source.load()) == 1
    (tmp_path / "good.yaml").unlink()
    assert source.load() == ()


def test_a_resource_defined_in_two_files_is_reported_and_the_first_file_wins(tmp_path: Path) -> None:
    reported: list[str] = []
    source = ConfigDirectory(tmp_path, on_problems=lambda problems: reported.extend(map(str, problems)))
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("10.0.0.1", "10.0.0.9"))
    assert [r.spec.address for r in source.load()] == ["10.0.0.1"]
    assert (
        len(reported) == 1 and "b.yaml:1: WorkloadEntry/prod/a: metadata.name: defined twice" in reported[0]
    )
