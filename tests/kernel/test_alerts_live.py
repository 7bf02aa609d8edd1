"""Alerts from real traffic: a flow crosses the threshold and falls back,
under a hostile process name; the events reach --json, the alerts file and
a program that hangs, which never holds up the JSON stream."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
from pathlib import Path
from typing import Any

from .service import START_TIMEOUT_S, Netmon, alive, private_dir, wait_until
from .traffic import Conn, tell

# Quotes, a command substitution, backticks, a newline and an escape
# sequence: 14 bytes, within the kernel's 15-byte names.
HOSTILE = "'$(t)`t`\"\n\x1b[1m"
HOOK = """#!/usr/bin/python3
import os, sys, time
data = sys.stdin.buffer.read()
with open(os.path.join({dir!r}, "hook-%d.json" % os.getpid()), "wb") as f:
    f.write(data)
time.sleep(600)
"""


def drain_server(ctl: Conn, host: str) -> None:
    """Accept one connection and read it to the end."""
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen()
        tell(ctl, listener.getsockname()[1])
        conn, _ = listener.accept()
        with conn:
            while conn.recv(1 << 20):
                pass


def stream_until_told(ctl: Conn, host: str, port: int) -> None:
    """Send as fast as the receiver reads until the test says stop."""
    with socket.create_connection((host, port)) as s:
        tell(ctl, "streaming")
        chunk = b"x" * 65536
        while not ctl.poll(0.002):
            s.sendall(chunk)
        ctl.recv()


def started(hook_dir: Path) -> list[int]:
    """Pids of the alert programs that have run, from the files they wrote."""
    return [int(p.stem.split("-")[1]) for p in hook_dir.glob("hook-*.json")]


def alerts_in(netmon: Netmon) -> list[dict[str, Any]]:
    out = []
    for line in netmon.lines():
        out += json.loads(line)["alerts"]
    return out


def test_alert_fires_and_resolves_through_every_sink(spawn: Any, tmp_path: Path) -> None:
    hook_dir = private_dir(owner=65534)  # the hook runs as nobody
    hook = hook_dir / "hook"
    hook.write_text(HOOK.format(dir=str(hook_dir)))
    hook.chmod(0o755)
    alerts_file = tmp_path / "alerts.jsonl"
    netmon = Netmon(
        # (threshold only: this is about the sinks, and a scan or a sweep by
        # something else on the machine must not take the hanging hook first)
        "--json", "--interval", "200", "--threshold", "200K", "--detectors", "threshold",
        "--user", "nobody",
        "--alerts", str(alerts_file), "--alert-exec", str(hook), "--alert-exec-timeout", "600",
    )  # fmt: skip
    try:
        wait_until(netmon.lines, "the first JSON object", START_TIMEOUT_S)  # capture is live
        status = netmon.status()
        assert status["Uid"].split()[0] == "65534" and int(status["CapEff"], 16) == 0
        receiver = spawn("nm-alert-sink", drain_server, "127.0.0.1")
        port = receiver.recv()
        sender = spawn(HOSTILE, stream_until_told, "127.0.0.1", port)
        assert sender.recv() == "streaming"

        def ours(state: str) -> dict[str, Any] | None:
            return next(
                (a for a in alerts_in(netmon) if a["pid"] == sender.pid and a["state"] == state),
                None,
            )

        fired = wait_until(lambda: ours("firing"), "a firing alert for the sender")
        assert fired["comm"] == HOSTILE
        assert (fired["detector"], fired["protocol"], fired["role"]) == (
            "threshold",
            "TCP",
            "client",
        )
        assert fired["value"] > fired["limit"] == 200 * 1024

        # The program started for the first event, and hangs.
        hooks = wait_until(lambda: started(hook_dir), "the alert program to start")
        sender.send("stop")
        sender.result()
        receiver.result()
        resolved = wait_until(lambda: ours("resolved"), "the sender's alert to resolve")
        assert resolved["alert_id"] == fired["alert_id"]
        assert resolved["ends_at"] >= resolved["starts_at"] == fired["starts_at"]
        # The JSON stream went on while the program still hangs.
        assert alive(hooks[0])
        assert netmon.stop() == 0
        # The programs were stopped with netmon.
        assert not any(alive(pid) for pid in started(hook_dir))
        first = json.loads(sorted(hook_dir.glob("hook-*.json"))[0].read_bytes())
        assert first["detector"] == "threshold" and first["state"] == "firing"
    finally:
        netmon.kill()
        for pid in started(hook_dir):  # left behind only when netmon was killed
            with contextlib.suppress(OSError):
                if str(hook).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(hook_dir)

    assert stat.S_IMODE(alerts_file.stat().st_mode) == 0o600
    logged = [json.loads(line) for line in alerts_file.read_text().splitlines()]
    mine = [e for e in logged if e.get("alert_id") == fired["alert_id"]]
    assert [e["state"] for e in mine] == ["firing", "resolved"]
    assert all(e["comm"] == HOSTILE for e in mine)
    err = "".join(netmon.lines("err"))
    assert "Traceback" not in err, err
