"""Live capture's startup errors, from the real command: one line on stderr,
its own exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netmon.errors import BccMissing, KernelHeadersMissing, PermissionDenied

REPO = Path(__file__).resolve().parents[2]
NETMON = [sys.executable, "-m", "netmon", "--json", "--numeric", "--count", "1"]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=env or dict(os.environ)
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmon: "), proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


def test_not_root() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = _run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *NETMON], env)
    _assert_one_line_error(proc, PermissionDenied.exit_code, "root")


def test_bcc_missing(tmp_path: Path) -> None:
    shadow = tmp_path / "bcc"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('no bcc here')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    _assert_one_line_error(_run(NETMON, env), BccMissing.exit_code, "python3-bpfcc")


def test_kernel_headers_missing(tmp_path: Path) -> None:
    if not Path("/usr/bin/unshare").exists():
        pytest.fail("unshare (util-linux) is needed for this test")
    empty = tmp_path / "modules"
    empty.mkdir()
    # Hide /lib/modules in a private mount namespace of the child only.
    script = f'mount --bind "{empty}" /lib/modules && exec "$@"'
    proc = _run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *NETMON]
    )
    _assert_one_line_error(proc, KernelHeadersMissing.exit_code, "linux-headers-")


def test_auto_without_cgroup2_falls_back_to_syscalls_and_says_why() -> None:
    from netmon.sources.bpf_link import cgroup2_mount

    root = cgroup2_mount()
    assert root is not None, "this test hides the cgroup v2 mount, which must exist"
    # Unmount it in a private mount namespace of the child only.
    script = f'umount -l "{root}" && exec "$@"'
    proc = _run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *NETMON]
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    warnings = proc.stderr.strip().splitlines()
    assert warnings[0] == (
        "netmon: warning: using syscalls probes: the cgroup v2 hierarchy is not mounted"
    ), proc.stderr
    assert "Traceback" not in proc.stderr
