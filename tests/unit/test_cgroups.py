"""Cgroup paths -> service names, and ids -> paths on a directory tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmon.cgroups import CgroupNames, service_name
from netmon.model import Cgroup

HEX = "3f2a1b0c9d8e" + "0123456789abcdef" * 3 + "0123"  # 64 hex digits
POD = "8d9e2f41-7c1a-4b2e-9f00-1234567890ab"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/system.slice/nginx.service", "nginx.service"),
        ("/system.slice/postgresql@15-main.service", "postgresql@15-main.service"),
        ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-42.scope",
         "app-firefox-42.scope"),
        ("/system.slice/nginx.service/workers", "nginx.service"),  # below a unit: the unit
        ("/init.scope", "init.scope"),
        (f"/system.slice/docker-{HEX}.scope", "docker:3f2a1b0c9d8e"),
        (f"/docker/{HEX}", "docker:3f2a1b0c9d8e"),  # cgroupfs driver
        (f"/system.slice/docker-{HEX}.scope/system.slice/nginx.service", "docker:3f2a1b0c9d8e"),
        (f"/system.slice/cri-containerd-{HEX}.scope", "containerd:3f2a1b0c9d8e"),
        (f"/machine.slice/crio-{HEX}.scope", "crio:3f2a1b0c9d8e"),
        (f"/machine.slice/libpod-{HEX}.scope", "podman:3f2a1b0c9d8e"),
        (f"/machine.slice/libpod-conmon-{HEX}.scope", "podman:3f2a1b0c9d8e"),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope",
         "podman:3f2a1b0c9d8e"),
        (f"/libpod_parent/libpod-{HEX}", "podman:3f2a1b0c9d8e"),
        (f"/kubepods/burstable/pod{POD}/{HEX}", "pod:8d9e2f41"),
        (f"/kubepods/pod{POD}/{HEX}", "pod:8d9e2f41"),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}"
         f".slice/cri-containerd-{HEX}.scope", "pod:8d9e2f41"),
        (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice", "pod:8d9e2f41"),
        ("/kubepods.slice/kubepods-besteffort.slice", "kubepods-besteffort.slice"),
        ("/system.slice", "system.slice"),
        ("/batch/job-17", "job-17"),
        (f"/{HEX}", HEX),  # a bare id with no runtime around it: just the name
        ("/", None),
        ("", None),
    ],
)  # fmt: skip
def test_service_names(path: str, name: str | None) -> None:
    assert service_name(path) == name


components = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1
)


@given(st.lists(components, min_size=1, max_size=8))
def test_a_name_is_a_container_a_pod_or_one_of_the_components(parts: list[str]) -> None:
    name = service_name("/" + "/".join(parts))
    assert name is not None
    runtime, _, rest = name.partition(":")
    if rest and runtime in ("docker", "containerd", "crio", "podman"):
        assert len(rest) == 12 and any(rest in p for p in parts)
    elif rest and runtime == "pod":
        assert any(p.startswith("kubepods") for p in parts)
    else:
        assert name in parts


@given(st.lists(components, min_size=1, max_size=8), st.sampled_from(["docker", "crio"]))
def test_a_container_scope_anywhere_names_the_container(parts: list[str], runtime: str) -> None:
    parts = [p for p in parts if not p.startswith("kubepods")] or ["x"]
    parts.insert(len(parts) // 2, f"{runtime}-{HEX}.scope")
    assert service_name("/" + "/".join(parts)) == f"{runtime}:{HEX[:12]}"


def make_tree(root: Path, *paths: str) -> dict[str, int]:
    ids = {}
    for path in paths:
        (root / path).mkdir(parents=True, exist_ok=True)
        ids[path] = os.stat(root / path).st_ino
    return ids


def test_ids_are_named_from_directory_inodes(tmp_path: Path) -> None:
    ids = make_tree(tmp_path, "system.slice/nginx.service", f"system.slice/docker-{HEX}.scope")
    names = CgroupNames(tmp_path)
    got = names.names([ids["system.slice/nginx.service"], ids[f"system.slice/docker-{HEX}.scope"]])
    assert got == {
        ids["system.slice/nginx.service"]: Cgroup("/system.slice/nginx.service", "nginx.service"),
        ids[f"system.slice/docker-{HEX}.scope"]: Cgroup(
            f"/system.slice/docker-{HEX}.scope", "docker:3f2a1b0c9d8e"
        ),
    }
    assert names.names([os.stat(tmp_path).st_ino]) == {os.stat(tmp_path).st_ino: Cgroup("/", None)}


def test_the_tree_is_walked_only_for_ids_never_seen(tmp_path: Path) -> None:
    ids = make_tree(tmp_path, "a.slice/one.service")
    names = CgroupNames(tmp_path, proc=tmp_path / "no-proc")
    names.names([ids["a.slice/one.service"]])
    assert names.walks == 1
    names.names([ids["a.slice/one.service"], 0])  # known (and 0: none): no walk
    assert names.walks == 1
    later = make_tree(tmp_path, "a.slice/two.service")["a.slice/two.service"]
    assert names.names([later]) == {later: Cgroup("/a.slice/two.service", "two.service")}
    assert names.walks == 2
    gone = 987654321  # not in the tree: looked for once, then remembered as unknown
    assert names.names([gone]) == {}
    assert names.names([gone]) == {}
    assert names.walks == 3


def fake_proc(tmp_path: Path, pid: int, line: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(f"4:memory:/x\n{line}\n")
    return proc


def test_a_process_with_the_id_names_it_without_a_walk(tmp_path: Path) -> None:
    tree = tmp_path / "cgroup"
    ids = make_tree(tree, f"system.slice/docker-{HEX}.scope", "other.service")
    wanted = ids[f"system.slice/docker-{HEX}.scope"]
    proc = fake_proc(tmp_path, 42, f"0::/system.slice/docker-{HEX}.scope")
    names = CgroupNames(tree, proc=proc)
    assert names.names([wanted], {wanted: 42}) == {
        wanted: Cgroup(f"/system.slice/docker-{HEX}.scope", "docker:3f2a1b0c9d8e")
    }
    assert names.walks == 0


@pytest.mark.parametrize(
    "line",
    ["0::/other.service", "0::/../../escape", "0::/gone.service", "1:name=systemd:/x"],
)
def test_a_process_elsewhere_does_not_name_the_id(tmp_path: Path, line: str) -> None:
    """The process moved (its cgroup has another inode), is outside this
    namespace, or its cgroup is gone: the tree is walked instead."""
    tree = tmp_path / "cgroup"
    ids = make_tree(tree, "a.service", "other.service")
    names = CgroupNames(tree, proc=fake_proc(tmp_path, 7, line))
    got = names.names([ids["a.service"]], {ids["a.service"]: 7})
    assert got == {ids["a.service"]: Cgroup("/a.service", "a.service")}
    assert names.walks == 1
    assert names.names([ids["a.service"]], {ids["a.service"]: 99}) == got  # 99: no such pid


def test_the_walk_is_bounded(tmp_path: Path) -> None:
    ids = make_tree(tmp_path, *(f"d{i}" for i in range(10)))
    names = CgroupNames(tmp_path, max_walk=3)
    assert len(names.names(ids.values())) == 3  # three directories named, the rest unknown


def test_without_cgroup_v2_nothing_is_named() -> None:
    names = CgroupNames(None)
    assert names.names([1, 2, 3]) == {}
    assert names.walks == 0
