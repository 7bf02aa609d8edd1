"""The user-space side of the kernel's per-CPU flow slots (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmon.sources.slots import online_cpus, parse_cpu_list


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0\n", {0}), ("0-3\n", {0, 1, 2, 3}), ("0-1,4,6-7", {0, 1, 4, 6, 7}), ("", set())],
)
def test_parse_cpu_list(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


@given(st.sets(st.integers(0, 300)))
def test_parse_cpu_list_reads_what_the_kernel_writes(cpus: set[int]) -> None:
    # The kernel writes runs of consecutive CPUs as ranges.
    runs: list[str] = []
    for cpu in sorted(cpus):
        if runs and cpu - 1 in cpus:
            first = runs[-1].split("-")[0]
            runs[-1] = f"{first}-{cpu}"
        else:
            runs.append(str(cpu))
    assert parse_cpu_list(",".join(runs) + "\n") == cpus


def test_online_cpus_falls_back_when_unreadable(tmp_path: Path) -> None:
    assert online_cpus(tmp_path / "missing")
    (tmp_path / "online").write_text("0-2\n")
    assert online_cpus(tmp_path / "online") == {0, 1, 2}
