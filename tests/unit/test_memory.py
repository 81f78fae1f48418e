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
