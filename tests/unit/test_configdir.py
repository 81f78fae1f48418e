from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import watchfiles

from pilotfish.configdir import ConfigDirectory, may_matter, watch_directory

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


def _addresses(resources: tuple[object, ...]) -> list[str]:
    return sorted(r.spec.address for r in resources)  # type: ignore[attr-defined]


def _two_files(root: Path) -> ConfigDirectory:
    root.mkdir(exist_ok=True)
    (root / "a.yaml").write_text(GOOD)
    (root / "b.yaml").write_text(GOOD.replace("name: a", "name: b").replace("10.0.0.1", "10.0.0.2"))
    source = ConfigDirectory(root)
    assert _addresses(source.load()) == ["10.0.0.1", "10.0.0.2"]
    return source


def test_a_file_truncated_to_zero_bytes_keeps_its_resources_until_it_has_content(tmp_path: Path) -> None:
    source = _two_files(tmp_path)
    (tmp_path / "a.yaml").write_text("")  # a non-atomic save, caught half way
    assert _addresses(source.load()) == ["10.0.0.1", "10.0.0.2"]
    assert "0 bytes" in source.debug()["kept"][str(tmp_path / "a.yaml")]
    (tmp_path / "a.yaml").write_text(GOOD.replace("10.0.0.1", "10.0.0.3"))
    assert _addresses(source.load()) == ["10.0.0.2", "10.0.0.3"]
    assert source.debug()["kept"] == {}
    (tmp_path / "a.yaml").unlink()  # gone while its directory exists: a deletion
    assert _addresses(source.load()) == ["10.0.0.2"]


def test_an_empty_file_that_never_had_resources_is_just_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    source = ConfigDirectory(tmp_path)
    assert source.load() == () and source.debug()["kept"] == {}


def test_a_removed_directory_keeps_everything_and_is_read_again_when_it_returns(tmp_path: Path) -> None:
    root = tmp_path / "config"
    source = _two_files(root)
    shutil.rmtree(root)
    assert _addresses(source.load()) == ["10.0.0.1", "10.0.0.2"]
    assert source.debug()["present"] is False and len(source.debug()["kept"]) == 2
    assert _addresses(source.load()) == ["10.0.0.1", "10.0.0.2"]  # still gone: still kept
    root.mkdir()  # recreated, empty so far: nothing is taken for deleted on the first look
    assert _addresses(source.load()) == ["10.0.0.1", "10.0.0.2"]
    (root / "a.yaml").write_text(GOOD.replace("10.0.0.1", "10.0.0.5"))  # an edit applies
    (root / "b.yaml").write_text(GOOD.replace("name: a", "name: b").replace("10.0.0.1", "10.0.0.2"))
    assert _addresses(source.load()) == ["10.0.0.2", "10.0.0.5"]
    assert source.debug()["kept"] == {}
    (root / "b.yaml").unlink()
    assert _addresses(source.load()) == ["10.0.0.5"]


def test_a_directory_replaced_by_a_rename_swap_is_read_and_absent_files_wait_one_look(tmp_path: Path) -> None:
    root = tmp_path / "config"
    source = _two_files(root)
    staged = tmp_path / "config.new"
    staged.mkdir()
    (staged / "a.yaml").write_text(GOOD.replace("10.0.0.1", "10.0.0.7"))
    root.rename(tmp_path / "config.old")
    staged.rename(root)
    assert _addresses(source.load()) == ["10.0.0.2", "10.0.0.7"]  # b.yaml: not on the first look
    assert "replaced" in source.debug()["kept"][str(root / "b.yaml")]
    assert _addresses(source.load()) == ["10.0.0.7"]  # the same directory again: b.yaml is gone


def test_a_missing_directory_at_start_loads_nothing_and_is_picked_up(tmp_path: Path) -> None:
    root = tmp_path / "config"
    source = ConfigDirectory(root)
    assert source.load() == () and source.debug()["present"] is False
    root.mkdir()
    (root / "a.yaml").write_text(GOOD)
    assert _addresses(source.load()) == ["10.0.0.1"]


def test_the_watcher_survives_removal_and_replacement_of_the_directory(tmp_path: Path) -> None:
    """The watch follows the directory itself: after rm -rf and a new directory, changes in the
    new one still reach ``changed`` (a real inotify watch, polled for the directory's identity)."""
    root = tmp_path / "config"
    root.mkdir()
    calls: list[float] = []

    async def scenario() -> None:
        stop, called = asyncio.Event(), asyncio.Event()

        def changed() -> None:
            calls.append(0)
            called.set()

        task = asyncio.create_task(watch_directory(root, changed, stop, check_every=0.1))

        async def until(count: int) -> None:
            async with asyncio.timeout(10):
                while len(calls) < count:
                    called.clear()
                    await called.wait()

        await asyncio.sleep(0.3)
        (root / "a.yaml").write_text(GOOD)
        await until(1)
        shutil.rmtree(root)
        await until(2)
        root.mkdir()
        await until(3)  # noticed it is back
        await asyncio.sleep(0.3)
        seen = len(calls)
        (root / "b.yaml").write_text(GOOD)
        await until(seen + 1)  # a change in the new directory is heard
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_files_the_loader_never_reads_do_not_count_as_changes(tmp_path: Path) -> None:
    """A written file without a YAML suffix (a swap file, an atomic save's temporary) cannot
    change the config; a YAML file, a directory and any removal can."""
    (tmp_path / ".app.yaml.tmp").write_text(GOOD)
    (tmp_path / "app.yaml").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    added, modified, deleted = watchfiles.Change.added, watchfiles.Change.modified, watchfiles.Change.deleted
    assert not may_matter(added, str(tmp_path / ".app.yaml.tmp"))
    assert not may_matter(modified, str(tmp_path / ".app.yaml.tmp"))
    assert may_matter(modified, str(tmp_path / "app.yaml"))
    assert may_matter(added, str(tmp_path / "sub"))
    assert may_matter(deleted, str(tmp_path / ".app.yaml.tmp"))
    assert may_matter(deleted, str(tmp_path / "gone.d"))  # was it a directory? it may have been


def test_an_atomic_save_is_one_change_heard_at_the_rename(tmp_path: Path) -> None:
    """Writing the temporary file is not heard (no push for nothing); the rename is."""
    root = tmp_path / "config"
    root.mkdir()
    calls: list[float] = []

    async def scenario() -> None:
        stop, called = asyncio.Event(), asyncio.Event()

        def changed() -> None:
            calls.append(0)
            called.set()

        task = asyncio.create_task(watch_directory(root, changed, stop, check_every=0.1))
        await asyncio.sleep(0.3)
        tmp = root / ".a.yaml.tmp"
        tmp.write_text(GOOD)
        await asyncio.sleep(0.5)
        assert calls == []
        tmp.rename(root / "a.yaml")
        await asyncio.wait_for(called.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
