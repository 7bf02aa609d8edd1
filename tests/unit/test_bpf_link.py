"""Finding the cgroup v2 mount (where socket mode attaches its cgroup programs)."""

from __future__ import annotations

from pathlib import Path

from netmon.sources.bpf_link import cgroup2_mount


def _mounts(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mounts"
    path.write_text(text)
    return path


def test_hybrid_hierarchy_mounts_cgroup2_under_unified(tmp_path: Path) -> None:
    mounts = _mounts(
        tmp_path,
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
    )
    assert cgroup2_mount(mounts) == Path("/sys/fs/cgroup/unified")


def test_unified_hierarchy(tmp_path: Path) -> None:
    mounts = _mounts(tmp_path, "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n")
    assert cgroup2_mount(mounts) == Path("/sys/fs/cgroup")


def test_escaped_spaces_and_no_cgroup2(tmp_path: Path) -> None:
    assert cgroup2_mount(_mounts(tmp_path, "cgroup2 /mnt/my\\040cg cgroup2 rw 0 0\n")) == Path(
        "/mnt/my cg"
    )
    assert cgroup2_mount(_mounts(tmp_path, "proc /proc proc rw 0 0\n")) is None
