#!/usr/bin/env python3
"""What netmon can still do once it has given up root.

For each set of capabilities to keep (--keep, default: none, CAP_PERFMON,
CAP_PERFMON+CAP_BPF, CAP_PERFMON+CAP_DAC_READ_SEARCH,
CAP_PERFMON+CAP_BPF+CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN), a fresh process
opens the live source in socket mode as root, drops to --user keeping only
that set (netmon.privileges.drop_privileges), then tries, in order:

  read      a whole read of the maps (LiveSource.read, batch lookups)
  publish   writing the rates back into anomaly_map (map updates)
  attach    attaching one raw/ICMP peer program to its syscall tracepoint,
            as socket mode does lazily while raw or ICMP sockets exist
  detach    detaching it again
  close     detaching everything (LiveSource.close)

With --preload the peer program is loaded into the kernel before the drop
(attaching then only opens the perf event), which tells the capability
needed to load it apart from the one needed to attach it.

It reports each step as ok or the error it raised, with the process's
CapEff and uid after the drop, and the kernel's settings that decide it
(kernel.unprivileged_bpf_disabled, kernel.perf_event_paranoid, the mode of
tracefs), and whether netmon.privileges.map_access_needs_cap_bpf finds that
map lookups need CAP_BPF here.

Run as root:  .venv/bin/python bench/privileges.py [--user nobody] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_SETS = (
    "",
    "CAP_PERFMON",
    "CAP_PERFMON,CAP_BPF",
    "CAP_PERFMON,CAP_DAC_READ_SEARCH",
    "CAP_PERFMON,CAP_BPF,CAP_DAC_READ_SEARCH",
    "CAP_SYS_ADMIN",
)
STEPS = ("read", "publish", "attach", "detach", "close")
PROBE_FN, PROBE_TP = "raw_enter_recvfrom", "syscalls:sys_enter_recvfrom"


def _child(user: str, keep_names: str, preload: bool) -> dict[str, Any]:
    """Runs in a fresh process: open, drop, try each step."""
    from netmon.metrics import MetricsEngine
    from netmon.privileges import CAPABILITY_NUMBERS, drop_privileges, lookup_user
    from netmon.sources.live import LiveSource

    keep = [CAPABILITY_NUMBERS[n] for n in keep_names.split(",") if n]
    source = LiveSource.open(probes="socket")
    result: dict[str, Any] = {"keep": keep_names or "(none)"}
    if preload:
        import bcc

        source._bpf.load_func(PROBE_FN, bcc.BPF.TRACEPOINT)
    creds = drop_privileges(lookup_user(user), keep)
    result["uid"] = creds.uids[1]
    result["cap_eff"] = f"{creds.cap_eff:#x}"
    source.stop_attaching()  # the step below attaches by hand
    engine = MetricsEngine(0.4, 1e9, 1.0)
    bpf = source._bpf  # the bench pokes at the program directly

    def attach() -> None:
        if PROBE_TP.encode() in bpf.tracepoint_fds:  # raw sockets exist: already on
            bpf.detach_tracepoint(tp=PROBE_TP)
        bpf.attach_tracepoint(tp=PROBE_TP, fn_name=PROBE_FN)

    steps = {
        "read": lambda: engine.update(source.read()),
        "publish": lambda: source.publish_rates(engine.rates()),
        "attach": attach,
        "detach": lambda: bpf.detach_tracepoint(tp=PROBE_TP),
        "close": source.close,
    }
    for name in STEPS:
        try:
            steps[name]()
            result[name] = "ok"
        except Exception as exc:
            result[name] = f"{type(exc).__name__}: {exc}"[:120]
    return result


def _setting(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", default="nobody")
    parser.add_argument(
        "--keep",
        action="append",
        help="a comma-separated set of capability names to keep (repeatable; '' for none)",
    )
    parser.add_argument("--preload", action="store_true", help="load the program before the drop")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.user, args.child, args.preload)))
        return 0
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    from netmon.privileges import lookup_user, map_access_needs_cap_bpf

    tracefs = Path("/sys/kernel/tracing")
    report: dict[str, Any] = {
        "map_access_needs_cap_bpf": map_access_needs_cap_bpf(lookup_user(args.user)),
        "kernel": platform.release(),
        "unprivileged_bpf_disabled": _setting("/proc/sys/kernel/unprivileged_bpf_disabled"),
        "perf_event_paranoid": _setting("/proc/sys/kernel/perf_event_paranoid"),
        "tracefs_mode": oct(stat.S_IMODE(tracefs.stat().st_mode)),
        "user": args.user,
        "preload": args.preload,
        "runs": [],
    }
    for keep in args.keep if args.keep is not None else DEFAULT_SETS:
        out = subprocess.run(
            [sys.executable, __file__, "--user", args.user, "--child", keep]
            + (["--preload"] if args.preload else []),
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            report["runs"].append({"keep": keep or "(none)", "error": last})
            continue
        report["runs"].append(json.loads(lines[-1]))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"kernel {report['kernel']}, unprivileged_bpf_disabled="
        f"{report['unprivileged_bpf_disabled']}, perf_event_paranoid="
        f"{report['perf_event_paranoid']}, tracefs mode {report['tracefs_mode']}, "
        f"user {args.user}" + (", program loaded before the drop" if args.preload else "")
    )
    print(
        "map lookups without capabilities: "
        + ("refused (netmon keeps CAP_BPF)" if report["map_access_needs_cap_bpf"] else "allowed")
    )
    for run in report["runs"]:
        print(f"\nkeep {run['keep']}:")
        if "error" in run:
            print(f"  failed: {run['error']}")
            continue
        print(f"  uid {run['uid']}, CapEff {run['cap_eff']}")
        for step in STEPS:
            print(f"  {step:8} {run[step]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
