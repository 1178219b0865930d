"""Returning freed heap memory to the OS (glibc's malloc_trim)."""
from __future__ import annotations

import platform

import pytest

from llara_cli.runtime.memory import release_free_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_heap_memory_can_be_released_on_glibc():
    blocks = [bytearray(1 << 20) for _ in range(64)]  # 64 MiB on the heap, then freed
    del blocks
    assert release_free_memory() is True
