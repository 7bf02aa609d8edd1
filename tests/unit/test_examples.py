"""The shipped examples are valid: Prometheus rules and configuration (by
promtool), the systemd unit (by systemd-analyze)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .test_export import promtool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VENV_NETMON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "netmon"


def test_promtool_accepts_the_shipped_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(EXAMPLES / "alerts.rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_promtool_accepts_the_shipped_scrape_config() -> None:
    out = subprocess.run(
        [promtool(), "check", "config", str(EXAMPLES / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr


def test_systemd_accepts_the_shipped_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd here)")
    unit = (EXAMPLES / "netmon.service").read_text()
    assert "/opt/netmon/.venv/bin/netmon " in unit
    # The same unit, pointing at this checkout's netmon.
    (tmp_path / "netmon.service").write_text(
        unit.replace("/opt/netmon/.venv/bin/netmon", str(VENV_NETMON))
    )
    out = subprocess.run(
        [analyze, "verify", str(tmp_path / "netmon.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout + out.stderr == ""
