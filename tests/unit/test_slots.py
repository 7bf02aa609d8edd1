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


class FakeTable:
    """The one-entry `flusher` array, as BCC presents it."""

    Key = int
    Leaf = int

    def __init__(self) -> None:
        self.values: dict[int, int] = {}

    def __setitem__(self, key: int, value: int) -> None:
        self.values[key] = value


def test_flush_visits_every_allowed_cpu_and_restores_the_affinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from netmon.sources import slots

    table = FakeTable()
    flusher = slots.SlotFlusher(table)
    assert table.values == {0: os.getpid()}  # the kernel honours this process's cues only
    allowed = {0, 2, 5}
    placed: list[set[int]] = []
    sent: list[tuple[set[int], bytes]] = []

    class Cue:
        def __init__(self, fail_at: int | None = None) -> None:
            self.fail_at = fail_at

        def send(self, data: bytes) -> int:
            sent.append((placed[-1], data))
            if len(sent) == self.fail_at:
                raise OSError("a send that fails")
            return 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(slots.os, "sched_getaffinity", lambda pid: set(allowed))
    monkeypatch.setattr(slots.os, "sched_setaffinity", lambda pid, cpus: placed.append(set(cpus)))
    flusher._cue = Cue()  # type: ignore[assignment]
    flusher.flush()
    assert sent == [({0}, b""), ({2}, b""), ({5}, b"")]  # zero bytes, from each CPU
    assert placed[-1] == allowed
    placed.clear()
    sent.clear()
    flusher._cue = Cue(fail_at=2)  # type: ignore[assignment]
    with pytest.raises(OSError):
        flusher.flush()
    assert placed == [{0}, {2}, allowed]  # back where it may run, even after a failure
    flusher.close()


def test_warns_when_netmon_may_not_run_on_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from netmon.sources import slots

    monkeypatch.setattr(slots, "online_cpus", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(slots.os, "sched_getaffinity", lambda pid: {0, 1})
    flusher = slots.SlotFlusher(FakeTable())
    assert len(flusher.warnings) == 1 and "CPU(s) 2,3" in flusher.warnings[0]
    flusher.close()
    monkeypatch.setattr(slots.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    flusher = slots.SlotFlusher(FakeTable())
    assert flusher.warnings == []
    flusher.close()
