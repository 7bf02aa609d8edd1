#!/usr/bin/env python3
"""Where the socket-mode send program spends its time.

Loads variants of bpf/netmon.bpf.c, each with one piece of the per-event work
removed, and measures `sock:sock_send_length`'s ns per run (bpf_stats) over
a one-byte UDP send loop of bench/overhead.py (a connected `send`, or with
--workload sendto an unconnected `sendto`). The variants run
interleaved for several rounds; the report gives each variant's median and its
difference to the unmodified program, i.e. what that piece costs.

Run as root:  .venv/bin/python bench/probe_breakdown.py [--rounds R] [-n N]
The variants are for measuring only; netmon itself always loads the real file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from overhead import bpf_stats_enabled, compile_loop, run_loop

from netmon.abi import bpf_dir
from netmon.sources.live import RAW_TP_FLAG, import_bcc, program_cflags

# variant -> (text to find, replacement); each removes one piece of work.
VARIANTS: dict[str, tuple[str, str] | None] = {
    "netmon (unmodified)": None,
    "slots off: every event takes the lookups": (
        "    if (slot->sk == sk && slot->ident.key.pid == tgid &&",
        "    if (0 && slot->sk == sk && slot->ident.key.pid == tgid &&",
    ),
    "slot hit without the per-jiffy flush check": (
        "            __u64 now = bpf_jiffies64();\n"
        "            if (now != slot->flushed_at)\n"
        "                flush_slot(slot, now);\n",
        "",
    ),
    "slot hit without comparing the socket": (
        "slot->ident.key.pid == tgid &&\n        same_socket(&slot->ident, &head, (char *)sk)) {",
        "slot->ident.key.pid == tgid) {",
    ),
    "unconnected: without the peer (registers and sockaddr)": (
        "        user_peer_flow(key, id, send_addr_from_regs());",
        "        user_peer_flow(key, id, 0);",
    ),
    "unconnected: without reading the user sockaddr": (
        "    if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))",
        "    if (1)",
    ),
}
PROGRAM = "count_send"
TRACEPOINT = "sock:sock_send_length"


def variant_source(edit: tuple[str, str] | None, workdir: Path) -> Path:
    text = (bpf_dir() / "netmon.bpf.c").read_text()
    if edit is not None:
        old, new = edit
        if old not in text:
            sys.exit(f"probe_breakdown: the program changed; update the variant {old[:40]!r}")
        text = text.replace(old, new)
    path = workdir / f"variant{abs(hash(edit))}.c"
    path.write_text(text)
    return path


def measure(bcc: object, source: Path, loop: Path, n: int, workload: str) -> float:
    """ns per run of the send program over one loop run."""
    flags = program_cflags("socket", 10240)
    bpf = bcc.BPF(src_file=str(source), cflags=flags)  # type: ignore[attr-defined]
    try:
        if RAW_TP_FLAG in flags:  # as netmon attaches it
            prog_id = bpf.load_func(PROGRAM.encode(), bcc.BPF.RAW_TRACEPOINT).fd  # type: ignore[attr-defined]
            bpf.attach_raw_tracepoint(tp=TRACEPOINT.split(":")[1], fn_name=PROGRAM)  # type: ignore[attr-defined]
        else:
            prog_id = bpf.load_func(PROGRAM.encode(), bcc.BPF.TRACEPOINT).fd  # type: ignore[attr-defined]
            bpf.attach_tracepoint(tp=TRACEPOINT, fn_name=PROGRAM)  # type: ignore[attr-defined]
        before = read_prog_stats_by_fd(prog_id)
        run_loop(loop, workload, n, 10000)
        after = read_prog_stats_by_fd(prog_id)
        runs = after[0] - before[0]
        return (after[1] - before[1]) / runs if runs else float("nan")
    finally:
        bpf.cleanup()


def read_prog_stats_by_fd(fd: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
    )
    return int(fields["run_cnt"]), int(fields["run_time_ns"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="sends per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--workload",
        choices=("send", "sendto"),
        default="send",
        help="the loop: a connected socket's send() (default), or an unconnected sendto(), "
        "whose peer is read from the syscall's arguments (the 'unconnected:' variants)",
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="measure only the variants whose name contains TEXT (beside the unmodified one)",
    )
    args = parser.parse_args()
    bcc = import_bcc()
    variants = {
        name: edit
        for name, edit in VARIANTS.items()
        if edit is None or args.only is None or args.only in name
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp, bpf_stats_enabled():
        workdir = Path(tmp)
        loop = compile_loop(workdir)
        sources = {name: variant_source(edit, workdir) for name, edit in variants.items()}
        for round_no in range(args.rounds):
            for name, source in sources.items():
                results[name].append(measure(bcc, source, loop, args.n, args.workload))
            print(f"  round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    base = statistics.median(results["netmon (unmodified)"])
    print(
        f"sock:sock_send_length, ns per run, {args.workload} loop, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'variant':45} {'ns/run':>8} {'saves':>8}")
    for name, values in results.items():
        median = statistics.median(values)
        saved = "" if name.startswith("netmon") else f"{base - median:8.0f}"
        print(f"{name:45} {median:8.0f} {saved:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
