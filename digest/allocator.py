"""The C allocator of a sending process keeps the memory a batch frees for the next batch.

A Mailgun batch call's body is a few megabytes, above glibc's threshold for
serving an allocation with its own ``mmap``: every call's body was mapped,
faulted in page by page and unmapped again, and the heap was trimmed and
grown back between blocks. That was 2.3-2.9 page faults per reader, about
6 µs of a worker's system CPU per reader, at 100,000 readers
(docs/performance-log.md, "The allocator returning memory to the system"). With
the thresholds raised the memory stays with the process, which reaches the
same peak.

glibc only: elsewhere (musl, macOS) nothing is changed.
"""

import ctypes
import logging
from functools import cache

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# The ceiling of glibc's own dynamic mmap threshold on 64-bit systems; a batch body stays
# well under it. The trim threshold is twice that, as glibc's dynamic rule sets it: a higher
# one (256 MB) took no more faults off and raised the peak RSS of the benchmark's mix of
# readers (own phrases, voters) to 303 MB from 267 MB, each thread's arena keeping its own top.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


@cache
def keep_freed_memory():
    """Raise this process's mmap and trim thresholds, once; True when the allocator took them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    taken = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("allocator thresholds raised=%s", taken)
    return taken
