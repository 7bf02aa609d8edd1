"""Which mappings netmon drops after compiling: only the compiler libraries'
mappings that hold clean file pages."""

from __future__ import annotations

from netmon.sources.memory import clean_compiler_mappings

SMAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 fe:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Anonymous:             0 kB
7f0000100000-7f0000180000 r--p 00100000 fe:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:                512 kB
Anonymous:            64 kB
7f0000180000-7f0000190000 rw-p 00180000 fe:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 fe:01 124 /usr/lib/llvm-14/lib/libclang-cpp.so.14
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fe:01 125 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000400000-7f0000500000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
"""


def test_only_clean_read_only_compiler_mappings() -> None:
    assert clean_compiler_mappings(SMAPS) == [
        (0x7F0000000000, 0x7F0000100000),  # LLVM text
        (0x7F0000200000, 0x7F0000300000),  # clang text
    ]  # not: LLVM relro with written pages, LLVM data, libc, anonymous memory
