"""netmon as a service, for real: `--serve` drops to nobody with no
capability and still counts exact bytes; the privilege drop itself."""

from __future__ import annotations

import os
import pwd
import struct
from pathlib import Path
from typing import Any

import pytest

from netmon.privileges import (
    CAP_BPF,
    CAPABILITY_NUMBERS,
    drop_privileges,
    lookup_user,
    map_access_needs_cap_bpf,
    read_credentials,
)
from netmon.sources.bpf_link import cgroup2_mount, cgroup_program_ids

from .service import Netmon, process_counter, scrape, wait_until
from .traffic import tcp_client, tcp_server

NOBODY = pwd.getpwnam("nobody")


def _cgroup_types() -> set[int]:
    """The attach types of socket mode's cgroup programs."""
    import bcc

    from netmon.sources.live import CGROUP_PROGRAMS

    return {int(getattr(bcc.BPFAttachType, attach)) for attach, _ in CGROUP_PROGRAMS.values()}


CGROUP_TYPES = _cgroup_types()


def prog_ids_held(pid: int) -> set[int]:
    """Ids of the BPF programs a process holds through its descriptors (a
    BPF link's fdinfo names its program)."""
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue  # closed meanwhile
        ids |= {int(line.split()[1]) for line in text.splitlines() if line.startswith("prog_id:")}
    return ids


def attached_ids() -> set[tuple[int, int]]:
    """(attach type, program id) of the programs attached at the cgroup v2
    root, for socket mode's attach types. Ids, not counts: other netmons may
    run on this machine meanwhile."""
    root = cgroup2_mount()
    assert root is not None, "socket mode needs cgroup v2"
    return {(t, i) for t in CGROUP_TYPES for i in cgroup_program_ids(root, t)}


@pytest.mark.parametrize("mode", ["socket", "syscalls"])
def test_service_runs_without_privileges_and_counts_exactly(mode: str, spawn: Any) -> None:
    netmon = Netmon("--serve", "127.0.0.1:0", "--interval", "200", "--probes", mode)
    try:
        url = netmon.metrics_url()
        status = netmon.status()
        # The drop happened before serving, and says so.
        assert any(
            "dropped privileges: running as user nobody" in line for line in netmon.lines("err")
        )
        assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
        assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
        assert status["Groups"] == ""
        # Nothing kept, unless this kernel checks CAP_BPF on every map read.
        kept = 1 << CAP_BPF if map_access_needs_cap_bpf(lookup_user("nobody")) else 0
        for field, want in (("CapEff", kept), ("CapPrm", kept), ("CapBnd", kept)):
            assert int(status[field], 16) == want, (field, status[field])
        assert int(status["CapInh"], 16) == int(status["CapAmb"], 16) == 0
        assert status["NoNewPrivs"] == "1"

        # Counting goes on through the maps' file descriptors: exact bytes.
        server = spawn("nm-svc-srv", tcp_server, "127.0.0.1", "send", "recv", 150_000, 4_321)
        port = server.recv()
        client = spawn("nm-svc-cli", tcp_client, "127.0.0.1", port, "send", "recv", 150_000, 4_321)
        sent = sum(t.bytes_sent for t in client.result().flows.values())
        server.send("done")
        received = sum(t.bytes_recv for t in server.result().flows.values())
        assert (sent, received) == (150_000, 150_000)
        wait_until(
            lambda: (
                process_counter(url, "netmon_process_transmit_bytes_total", "nm-svc-cli") == sent
                and process_counter(url, "netmon_process_receive_bytes_total", "nm-svc-srv")
                == received
                and process_counter(url, "netmon_process_receive_bytes_total", "nm-svc-cli")
                == 4_321
            ),
            "the generator's exact bytes in the metrics",
        )
        metrics = scrape(url)
        assert metrics["netmon_build_info"] == {(("probes", mode), ("version", "0.1.0")): 1.0}
        ours = {(t, i) for t, i in attached_ids() if i in prog_ids_held(netmon.proc.pid)}
        assert {t for t, _ in ours} == (CGROUP_TYPES if mode == "socket" else set())
        assert netmon.stop() == 0
    finally:
        netmon.kill()
    err = "".join(netmon.lines("err"))
    assert "Traceback" not in err and "error" not in err, err
    # Detached on the way out, by a process that was no longer root.
    assert not ours & attached_ids()


def _child_drop(keep: list[int]) -> bytes:
    """Fork; the child drops privileges and reports what it has left."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            creds = drop_privileges(lookup_user("nobody"), keep)
            again = read_credentials()
            assert again == creds
            try:
                os.setuid(0)
                regained = 1
            except PermissionError:
                regained = 0
            os.write(w, struct.pack("<QQQQI?", creds.cap_eff, creds.cap_prm, creds.cap_bnd,
                                    creds.cap_amb, creds.uids[0], bool(regained)))  # fmt: skip
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return data


@pytest.mark.parametrize("keep", [[], ["CAP_PERFMON"]])
def test_drop_privileges_leaves_exactly_what_was_kept(keep: list[str]) -> None:
    numbers = [CAPABILITY_NUMBERS[name] for name in keep]
    mask = sum(1 << n for n in numbers)
    eff, prm, bnd, amb, uid, regained = struct.unpack("<QQQQI?", _child_drop(numbers))
    assert (eff, prm, bnd, amb) == (mask, mask, mask, 0)
    assert uid == NOBODY.pw_uid
    assert not regained
