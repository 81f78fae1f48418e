"""``memory.release_free_memory``: glibc's malloc_trim where it exists (Linux with glibc, as here
and in the project's images), a clear False elsewhere; never an exception."""

from __future__ import annotations

import platform

from pilotfish import memory


def test_free_memory_is_released_on_glibc() -> None:
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # heap the trim can give back
    del blocks
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert memory.release_free_memory() is expected


def test_gc_tuning_sets_the_documented_thresholds() -> None:
    import gc

    before = gc.get_threshold()
    try:
        memory.tune_gc()
        assert gc.get_threshold() == memory.GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
