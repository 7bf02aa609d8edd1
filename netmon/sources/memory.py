"""Give back what compiling the BPF program left resident in netmon.

BCC compiles the program with clang/LLVM inside the netmon process. Once the
program is loaded, LLVM's code is not run again, yet the pages of
libLLVM/libclang it touched stay mapped (tens of MB), as does the heap the
compiler freed but malloc kept. This drops both:

- the heap: a garbage collection, then glibc's malloc_trim(0);
- the compiler's libraries: their mappings that hold only clean file pages
  (no private, written copy: "Anonymous: 0 kB" in /proc/self/smaps) are
  dropped with madvise(MADV_DONTNEED). The pages stay in the page cache; if
  the code runs again it faults them back in from the file, unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_COMPILER_LIBS = re.compile(r"/lib(LLVM|clang)[^/]*\.so")
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def clean_compiler_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, end) of the compiler libraries' mappings that hold only clean
    file pages, from the text of /proc/self/smaps."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        match = _MAPPING.match(line)
        if match:
            start, end, perms, path = match.groups()
            wanted = "w" not in perms and _COMPILER_LIBS.search(path) is not None
            current = (int(start, 16), int(end, 16)) if wanted else None
        elif current is not None and line.startswith("Anonymous:"):
            if int(line.split()[1]) == 0:
                found.append(current)
            current = None
    return found


def release_compiler_memory(smaps_path: Path = Path("/proc/self/smaps")) -> None:
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if hasattr(libc, "malloc_trim"):  # glibc
        libc.malloc_trim(0)
    try:
        regions = clean_compiler_mappings(smaps_path.read_text())
    except OSError as exc:
        log.debug("cannot read %s: %s", smaps_path, exc)
        return
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, end in regions:
        if libc.madvise(start, end - start, _MADV_DONTNEED) != 0:
            log.debug("madvise(%#x) failed: errno %d", start, ctypes.get_errno())
