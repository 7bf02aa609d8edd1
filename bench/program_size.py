#!/usr/bin/env python3
"""What a change to the kernel program adds to each counting program, exactly.

Compiles this build's bpf/ and another build's (--against DIR, a bpf/
directory) in each probe mode and compares the counting programs instruction
by instruction: the count, and the instructions only one side has (stack
offsets and jump distances that merely shift are not differences). Helper
calls are named, so an addition in the creation path of an entry (after
bpf_get_current_comm) is told from one on every event. Unlike timings, the
result does not depend on the machine's load.

Run as root:  .venv/bin/python bench/program_size.py --against /path/to/other/bpf
"""

from __future__ import annotations

import argparse
import difflib
import struct
import sys
import tempfile
from collections import Counter
from pathlib import Path

from netmon.abi import bpf_dir
from netmon.sources.live import COUNTING_PROGRAMS, import_bcc, program_cflags

HELPERS = {1: "map_lookup_elem", 2: "map_update_elem", 5: "ktime_get_ns",
           14: "get_current_pid_tgid", 16: "get_current_comm", 35: "get_current_task",
           80: "get_current_cgroup_id", 112: "probe_read_user",
           113: "probe_read_kernel"}  # fmt: skip


def instructions(bcc: object, directory: Path, mode: str, fn: str) -> list[str]:
    """The program's instructions as comparable text: stack offsets and jump
    distances left out, helper calls named."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "netmon.bpf.c"
        source.write_text((directory / "netmon.bpf.c").read_text())
        flags = [f for f in program_cflags(mode, 10240) if not f.startswith("-I")]
        bpf = bcc.BPF(src_file=str(source), cflags=[*flags, f"-I{directory}"])  # type: ignore[attr-defined]
        try:
            raw = bpf.dump_func(fn.encode())
        finally:
            bpf.cleanup()
    out = []
    for i in range(0, len(raw), 8):
        code, regs, off, imm = struct.unpack("<BBhi", raw[i : i + 8])
        jump = code & 7 in (5, 6)
        if jump and code & 0xF0 == 0x80:
            out.append(f"call {HELPERS.get(imm, imm)}")
        elif jump:
            out.append(f"jump {code:02x} {regs:02x} {imm}")
        elif (regs >> 4) == 10 or (regs & 0xF) == 10:  # r10: a stack slot, its offset shifts
            out.append(f"stack {code:02x}")
        else:
            out.append(f"{code:02x} {regs:02x} {off} {imm}")
    return out


def _calls(program: list[str]) -> Counter[str]:
    return Counter(i[5:] for i in program if i.startswith("call "))


def _beside_name(program: list[str], helper: str) -> tuple[int, int]:
    """How many calls of `helper` there are, and how many sit in a block
    (no jump in between) after a bpf_get_current_comm call: the code that
    fills in a new traffic_map or pid_stats entry."""
    sites = with_name = 0
    for i, insn in enumerate(program):
        if insn != f"call {helper}":
            continue
        sites += 1
        for before in reversed(program[:i]):
            if before == "call get_current_comm":
                with_name += 1
                break
            if before.startswith("jump"):
                break
    return sites, with_name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True, help="the other build's bpf/")
    args = parser.parse_args()
    if not (args.against / "netmon.bpf.c").is_file():
        sys.exit(f"program_size: no netmon.bpf.c in {args.against}")
    bcc = import_bcc()
    print(f"this build: {bpf_dir()}   other: {args.against}")
    for mode, programs in COUNTING_PROGRAMS.items():
        for fn in programs:
            if mode == "syscalls" and not fn.startswith("count_exit_"):
                continue  # the entry programs only stash their arguments
            ours = instructions(bcc, bpf_dir(), mode, fn)
            theirs = instructions(bcc, args.against, mode, fn)
            matcher = difflib.SequenceMatcher(a=theirs, b=ours, autojunk=False)
            added = sum(j2 - j1 for tag, _, _, j1, j2 in matcher.get_opcodes() if tag != "equal")
            removed = sum(i2 - i1 for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal")
            new_calls = _calls(ours) - _calls(theirs)
            print(f"{mode:8} {fn:22} {len(theirs):5} -> {len(ours):5} instructions "
                  f"(+{added} -{removed} after alignment); helper calls added: "
                  f"{dict(new_calls) or 'none'}")  # fmt: skip
            for helper in new_calls:
                sites, with_name = _beside_name(ours, helper)
                print(f"{'':32}{helper}: {with_name} of {sites} calls in a block that reads "
                      "the name: run only when an entry is created"
                      if sites == with_name else
                      f"{'':32}{helper}: {sites - with_name} of {sites} calls outside the "
                      "blocks that create entries")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
