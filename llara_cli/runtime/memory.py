"""Giving freed heap memory back to the operating system.

PyTorch's CPU allocator is the C library's ``malloc``. glibc raises its mmap threshold as large blocks are freed
(up to 32 MiB), so the activations of one pass end up on the heap and stay resident after they are freed: a loop
that builds and frees a large autograd graph per chunk (the cached contrastive loss) then holds several chunks'
worth of freed memory. :func:`release_free_memory` asks glibc to return it (``malloc_trim(0)``); elsewhere it does
nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

__all__ = ["release_free_memory"]

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free memory to the OS where the C library can (glibc); whether it could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
